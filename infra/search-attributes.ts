import type { Connection } from '@temporalio/client';
import type { SearchAttributeType } from '@temporalio/common';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import type { temporal } from '@temporalio/proto';
import { CLI_TYPE_NAMES, PIPELINE_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { ConfigError } from './errors.js';

const INDEXED = (type: SearchAttributeType) => encodeSearchAttributeIndexedValueType(type)!;

/** The pipeline's search attributes missing from a namespace (name → type); a name registered with another type throws. */
async function missingAttributes(connection: Connection, namespace: string): Promise<Record<string, temporal.api.enums.v1.IndexedValueType>> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const existing = customAttributes ?? {};
  const missing: Record<string, temporal.api.enums.v1.IndexedValueType> = {};
  for (const key of PIPELINE_SEARCH_ATTRIBUTES) {
    const have = existing[key.name];
    if (have === undefined || have === null) missing[key.name] = INDEXED(key.type);
    else if (have !== INDEXED(key.type)) {
      throw new ConfigError(
        'SEARCH_ATTRIBUTE_TYPE',
        `search attribute ${key.name} is registered in namespace ${namespace} with another type than ${CLI_TYPE_NAMES[key.type]}: ` +
          `remove it (temporal operator search-attribute remove --name ${key.name}) and create it as ${CLI_TYPE_NAMES[key.type]}`,
      );
    }
  }
  return missing;
}

/**
 * Registers the pipeline's search attributes (workflows/search-attributes.ts) in a namespace through the operator
 * service, adding only the missing ones: idempotent, and needed for a dev server whose database predates them
 * (`start-dev --search-attribute` registers only on a fresh database). A name registered with another type is a
 * ConfigError naming it: the workflow's upserts would fail every workflow task.
 * Returns the names it added.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const missing = await missingAttributes(connection, namespace);
  if (!Object.keys(missing).length) return [];
  try {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  } catch (err) {
    // ALREADY_EXISTS (6): a concurrent caller registered them meanwhile
    if ((err as { code?: number }).code !== 6) throw err;
  }
  return Object.keys(missing);
}

/**
 * What a cpu worker checks before it polls a cluster's namespace: every search attribute the pipeline upserts must
 * exist, else each run's workflow tasks would fail until an operator adds them. Missing ones are a ConfigError that
 * gives the commands to create them. 'unchecked' when this identity may not list them (Temporal Cloud API keys
 * without the permission): the worker then starts and says so.
 */
export async function requireSearchAttributes(connection: Connection, namespace: string): Promise<'ok' | 'unchecked'> {
  let missing: Record<string, unknown>;
  try {
    missing = await missingAttributes(connection, namespace);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    return 'unchecked';
  }
  const names = Object.keys(missing);
  if (!names.length) return 'ok';
  const create = PIPELINE_SEARCH_ATTRIBUTES.filter((k) => names.includes(k.name)).map(
    (k) => `temporal operator search-attribute create --namespace ${namespace} --name ${k.name} --type ${CLI_TYPE_NAMES[k.type]}`,
  );
  throw new ConfigError(
    'SEARCH_ATTRIBUTES_MISSING',
    `namespace ${namespace} lacks the search attribute${names.length > 1 ? 's' : ''} ${names.join(', ')} that every pipeline run sets ` +
      `(its workflow tasks would fail until they exist): ${create.join('; ')} (README, "The Temporal Web UI")`,
  );
}
