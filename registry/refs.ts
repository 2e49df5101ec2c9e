import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { checkId, idProblem, invalidIdMessage } from '../pipeline/ids.js';

/** Stable types for registry failures: the CLI maps them to messages and exit codes, tests match on them. */
export const RegistryErrorType = {
  InvalidModelRef: 'InvalidModelRef',
  UnknownModel: 'UnknownModel',
  UnknownVersion: 'UnknownVersion',
  UnknownAlias: 'UnknownAlias',
  VersionNotPromotable: 'VersionNotPromotable',
  NothingToRollBack: 'NothingToRollBack',
  NotAwaitingApproval: 'NotAwaitingApproval',
} as const;
export type RegistryErrorTypeName = (typeof RegistryErrorType)[keyof typeof RegistryErrorType];

export class RegistryError extends Error {
  constructor(
    readonly type: RegistryErrorTypeName,
    message: string,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** `name`, `name@alias` or `name:version` (also `name@v3` for a version), as the CLI takes it. */
export interface ModelRef {
  modelName: string;
  alias?: string;
  version?: number;
}

/** Parses a model reference; a bare name means its `champion` alias. Names and aliases follow pipeline/ids.ts. */
export function parseModelRef(text: string, defaultAlias = 'champion'): ModelRef {
  const usage = 'use <name>, <name>@<alias> or <name>:<version> (e.g. propensity@champion, propensity:3)';
  const m = /^([^@:]+)(?:@([^@:]+)|:([^@:]+))?$/.exec(text.trim());
  if (!m) throw new RegistryError(RegistryErrorType.InvalidModelRef, `"${text}" is not a model reference: ${usage}`);
  const [, modelName, alias, versionText] = m;
  const nameProblem = idProblem('modelName', modelName);
  if (nameProblem !== null) {
    throw new RegistryError(
      RegistryErrorType.InvalidModelRef,
      `"${text}" is not a model reference: ${usage}; ${invalidIdMessage('modelName', modelName, nameProblem)}`,
    );
  }
  const vText = versionText ?? (alias && /^v\d+$/.test(alias) ? alias.slice(1) : undefined);
  if (vText !== undefined) {
    const version = Number(vText);
    if (!/^\d+$/.test(vText) || !Number.isSafeInteger(version) || version < 1) {
      throw new RegistryError(RegistryErrorType.InvalidModelRef, `"${text}": a version is a positive integer, got "${vText}"`);
    }
    return { modelName, version };
  }
  const aliasProblem = alias === undefined ? null : idProblem('alias', alias);
  if (aliasProblem !== null) {
    throw new RegistryError(
      RegistryErrorType.InvalidModelRef,
      `"${text}": "${alias}" is not a valid alias name: ${invalidIdMessage('alias', alias!, aliasProblem)}`,
    );
  }
  return { modelName, alias: alias ?? checkId('alias', defaultAlias) };
}

export const formatModelRef = (r: ModelRef) =>
  r.version !== undefined ? `${r.modelName}:${r.version}` : `${r.modelName}@${r.alias ?? 'champion'}`;

export interface ResolvedModel {
  modelName: string;
  version: number;
  /** the alias it was resolved through, null for an explicit version */
  alias: string | null;
  /** s3://bucket/models/<name>/v<N>/model.json */
  uri: string;
  runId: string;
}

/**
 * Resolves a reference against Postgres (the registry's truth): an unknown model, version or alias is a
 * RegistryError naming what exists instead.
 */
export async function resolveModelRef(db: Kysely<Database>, ref: ModelRef): Promise<ResolvedModel> {
  const versions = await db
    .selectFrom('ml.model_versions')
    .select(['version', 'uri', 'run_id'])
    .where('model_name', '=', ref.modelName)
    .orderBy('version')
    .execute();
  if (versions.length === 0) {
    const names = await db.selectFrom('ml.model_versions').select('model_name').distinct().orderBy('model_name').execute();
    throw new RegistryError(
      RegistryErrorType.UnknownModel,
      `unknown model "${ref.modelName}"` +
        (names.length ? ` (registered models: ${names.map((n) => n.model_name).join(', ')})` : ' (no model is registered yet)'),
    );
  }
  let version: number;
  let alias: string | null = null;
  if (ref.version !== undefined) {
    version = ref.version;
  } else {
    alias = ref.alias ?? 'champion';
    const row = await db
      .selectFrom('ml.model_aliases')
      .select('version')
      .where('model_name', '=', ref.modelName)
      .where('alias', '=', alias)
      .executeTakeFirst();
    if (!row) {
      const aliases = await db.selectFrom('ml.model_aliases').select('alias').where('model_name', '=', ref.modelName).orderBy('alias').execute();
      throw new RegistryError(
        RegistryErrorType.UnknownAlias,
        `model "${ref.modelName}" has no alias "${alias}"` +
          (aliases.length ? ` (its aliases: ${aliases.map((a) => a.alias).join(', ')})` : ' (it has no aliases)'),
      );
    }
    version = row.version;
  }
  const found = versions.find((v) => v.version === version);
  if (!found) {
    throw new RegistryError(
      RegistryErrorType.UnknownVersion,
      `model "${ref.modelName}" has no version ${version} (versions: ${versions.map((v) => v.version).join(', ')})`,
    );
  }
  return { modelName: ref.modelName, version, alias, uri: found.uri, runId: found.run_id };
}
