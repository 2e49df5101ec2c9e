import type { ModelArtifacts } from '../ml/types.js';
import type { Preprocessor } from '../ml/preprocess.js';
import { keys, type ArtifactRef, type ArtifactStore } from './artifacts.js';

/** A model's two files in S3, as claim checks. */
export interface ModelRef {
  modelJson: ArtifactRef;
  weights: ArtifactRef;
}

export async function writeModel(
  store: ArtifactStore,
  keyOf: (file: string) => string,
  artifacts: ModelArtifacts,
): Promise<ModelRef> {
  const [modelJson, weights] = await Promise.all([
    store.putJson(keyOf('model.json'), artifacts.modelJson),
    store.put(keyOf('weights.bin'), artifacts.weights),
  ]);
  return { modelJson, weights };
}

export async function readModel(store: ArtifactStore, ref: ModelRef): Promise<ModelArtifacts> {
  const [modelJson, weights] = await Promise.all([
    store.getJson<Record<string, unknown>>(ref.modelJson),
    store.get(ref.weights),
  ]);
  return { modelJson, weights };
}

/** A registered version's files by name and number, read and parsed (preprocessing included). */
export async function readRegistered(store: ArtifactStore, modelName: string, version: number): Promise<{ artifacts: ModelArtifacts; pre: Preprocessor }> {
  const file = async (f: string) => {
    const key = keys.modelFile(modelName, version, f);
    try {
      return await store.getKey(key);
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status !== 404) throw err;
      throw new MissingModelFileError(`model ${modelName}:${version} is registered but ${store.uri(key)} does not exist`);
    }
  };
  const [json, weights, pre] = await Promise.all([file('model.json'), file('weights.bin'), file('preprocessing.json')]);
  return { artifacts: { modelJson: JSON.parse(new TextDecoder().decode(json)), weights }, pre: JSON.parse(new TextDecoder().decode(pre)) as Preprocessor };
}

/** A registered version whose files are gone: not a passing fault (typed ArtifactIntegrity, non-retryable). */
export class MissingModelFileError extends Error {
  readonly type = 'ArtifactIntegrity';
}

export type { ArtifactRef };
