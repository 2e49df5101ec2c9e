import { DataType, Table, Utf8, makeVector, tableFromIPC, tableToIPC, vectorFromArray, type Vector } from 'apache-arrow';

import type { Frame } from '../ml/types.js';

export type { Frame };

const ID = 'entity_id';
const LABEL = 'label';

/** Arrow IPC (file format); a column's kind is its type: Float64 numeric, Utf8 categorical. */
export function frameToIpc(frame: Frame): Uint8Array {
  const columns: Record<string, Vector> = {
    [ID]: vectorFromArray(frame.ids, new Utf8()),
    [LABEL]: makeVector(frame.label),
  };
  for (const [name, values] of Object.entries(frame.numeric)) columns[name] = makeVector(values);
  for (const [name, values] of Object.entries(frame.categorical)) columns[name] = vectorFromArray(values, new Utf8());
  return tableToIPC(new Table(columns), 'file');
}

export function ipcToFrame(bytes: Uint8Array): Frame {
  const table = tableFromIPC(bytes);
  const rows = table.numRows;
  const frame: Frame = { ids: [], label: new Uint8Array(rows), numeric: {}, categorical: {} };
  for (const field of table.schema.fields) {
    const col = table.getChild(field.name)!;
    if (field.name === ID) frame.ids = Array.from(col.toArray() as ArrayLike<string>, String);
    else if (field.name === LABEL) frame.label = Uint8Array.from(col.toArray() as ArrayLike<number>);
    else if (DataType.isUtf8(field.type)) frame.categorical[field.name] = Array.from(col.toArray() as ArrayLike<string | null>);
    else frame.numeric[field.name] = Float64Array.from(col.toArray() as ArrayLike<number>);
  }
  return frame;
}
