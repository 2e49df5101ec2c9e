import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

// The search attributes a pipeline run carries, so the Temporal Web UI and `temporal workflow list --query` speak ML
// (README, "The Temporal Web UI"). Defined once: the workflow upserts them, the dev stack registers them
// (`--search-attribute` flags and, for a server started before they existed, the operator service), and the README
// lists the `temporal operator search-attribute create` commands for a real cluster. Workflow-safe: data only.

/** the model the run trains, e.g. `propensity` */
export const MODEL_ATTRIBUTE = defineSearchAttributeKey('PropensityModel', SearchAttributeType.KEYWORD);
/** running | awaiting_approval | registered | rejected | failed | cancelled */
export const OUTCOME_ATTRIBUTE = defineSearchAttributeKey('PropensityOutcome', SearchAttributeType.KEYWORD);
/** the chosen model's ROC-AUC on the test split, once evaluated */
export const TEST_AUC_ATTRIBUTE = defineSearchAttributeKey('PropensityTestAuc', SearchAttributeType.DOUBLE);
/** what started the run: cli, schedule:<id>, resume, test, … */
export const TRIGGER_ATTRIBUTE = defineSearchAttributeKey('PropensityTrigger', SearchAttributeType.KEYWORD);

export const PIPELINE_SEARCH_ATTRIBUTES = [MODEL_ATTRIBUTE, OUTCOME_ATTRIBUTE, TEST_AUC_ATTRIBUTE, TRIGGER_ATTRIBUTE] as const;

export type RunOutcome = 'running' | 'awaiting_approval' | 'registered' | 'rejected' | 'failed' | 'cancelled';

/** The type names `temporal server start-dev --search-attribute` and `temporal operator search-attribute create` take. */
export const CLI_TYPE_NAMES: Record<SearchAttributeType, string> = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
};

/** `--search-attribute Name=Type` flags for `temporal server start-dev` (registered on a fresh dev database only). */
export const devServerSearchAttributeFlags = (): string[] =>
  PIPELINE_SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=${CLI_TYPE_NAMES[k.type]}`]);
