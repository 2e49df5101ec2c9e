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

/** Rows of several frames with the same columns, in order. */
export function concatFrames(frames: Frame[]): Frame {
  if (frames.length === 1) return frames[0];
  const n = frames.reduce((a, f) => a + f.ids.length, 0);
  const first = frames[0] ?? { ids: [], label: new Uint8Array(0), numeric: {}, categorical: {} };
  const out: Frame = { ids: new Array(n), label: new Uint8Array(n), numeric: {}, categorical: {} };
  for (const name of Object.keys(first.numeric)) out.numeric[name] = new Float64Array(n);
  for (const name of Object.keys(first.categorical)) out.categorical[name] = new Array(n);
  let at = 0;
  for (const f of frames) {
    for (let i = 0; i < f.ids.length; i++) out.ids[at + i] = f.ids[i];
    out.label.set(f.label, at);
    for (const name of Object.keys(out.numeric)) out.numeric[name].set(f.numeric[name], at);
    for (const name of Object.keys(out.categorical)) {
      const src = f.categorical[name];
      const dst = out.categorical[name];
      for (let i = 0; i < src.length; i++) dst[at + i] = src[i];
    }
    at += f.ids.length;
  }
  return out;
}

/** A table of text columns (e.g. quarantined source rows with their reason) as Arrow IPC. */
export function textTableToIpc(columns: Record<string, (string | null)[]>): Uint8Array {
  const vectors: Record<string, Vector> = {};
  for (const [name, values] of Object.entries(columns)) vectors[name] = vectorFromArray(values, new Utf8());
  return tableToIPC(new Table(vectors), 'file');
}
