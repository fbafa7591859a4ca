/**
 * A bad flag, environment variable or config value: the message names it (`--to: …`,
 * `gateway.toml: tokens[0].secret …`) and the CLI answers with exit code 2, as for any usage error.
 */
export class UsageError extends Error {
  override name = "UsageError";
}
