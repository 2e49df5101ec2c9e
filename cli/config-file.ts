import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { parsePipelineConfig, type PipelineConfig } from '../pipeline/config.js';
import { CliError, ExitCode } from './common.js';

export interface ConfigFile {
  /** the file's content as written (what the workflow receives and validates again) */
  raw: unknown;
  /** validated, defaults filled in */
  config: PipelineConfig;
}

/**
 * Reads a pipeline config from a .json, .yaml or .yml file and validates it, so that a bad key fails the
 * command before anything is started or created. Errors name the file, and the line for a syntax error.
 */
export function loadConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read config file ${file}: ${(err as Error).message}`, ExitCode.usage, 'InvalidConfig');
  }
  const ext = path.extname(file).toLowerCase();
  let raw: unknown;
  try {
    raw = ext === '.yaml' || ext === '.yml' ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    const kind = ext === '.yaml' || ext === '.yml' ? 'YAML' : 'JSON (use a .yaml or .yml name for YAML)';
    throw new CliError(`${file} is not valid ${kind}${where}: ${(err as Error).message.split('\n')[0]}`, ExitCode.usage, 'InvalidConfig');
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CliError(`${file}: a pipeline config is an object of keys (modelName, source, …)`, ExitCode.usage, 'InvalidConfig');
  }
  try {
    return { raw, config: parsePipelineConfig(raw) };
  } catch (err) {
    throw new CliError(`${file}: ${(err as Error).message}`, ExitCode.usage, 'InvalidConfig');
  }
}
