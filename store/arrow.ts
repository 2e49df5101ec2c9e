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

export function frameRows(frame: Frame): number {
  return frame.ids.length;
}

/** Rows at the given indices, in that order. */
export function takeRows(frame: Frame, idx: ArrayLike<number>): Frame {
  const n = idx.length;
  const out: Frame = { ids: new Array(n), label: new Uint8Array(n), numeric: {}, categorical: {} };
  for (let i = 0; i < n; i++) {
    out.ids[i] = frame.ids[idx[i]];
    out.label[i] = frame.label[idx[i]];
  }
  for (const [name, col] of Object.entries(frame.numeric)) {
    const dst = new Float64Array(n);
    for (let i = 0; i < n; i++) dst[i] = col[idx[i]];
    out.numeric[name] = dst;
  }
  for (const [name, col] of Object.entries(frame.categorical)) {
    const dst = new Array<string | null>(n);
    for (let i = 0; i < n; i++) dst[i] = col[idx[i]];
    out.categorical[name] = dst;
  }
  return out;
}
