/** A configuration or environment problem the user has to fix; `code` is stable for programs, the message is for people. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
