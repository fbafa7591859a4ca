// What happens to an error nobody expected: one log line with its code and where it happened,
// and the process carries on. A stack trace in the compiled binary is whole lines of minified
// source, useless in a log, so only `--log-level debug` prints it.
import { log } from "./log.ts";

/** `Name [code]: message`, on one line, for any thrown value. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error).split("\n", 1)[0] ?? "";
  const code = (error as { code?: unknown }).code;
  const tag = typeof code === "string" && code !== "" ? ` [${code}]` : "";
  return `${error.name}${tag}: ${error.message.split("\n", 1)[0]}`;
}

/** Logs an unexpected error with its context (`stream 7 (request …)`, `session …`) on one line. */
export function logFault(context: string, error: unknown): void {
  log.error(`${context}: ${describeError(error)}`);
  if (error instanceof Error && error.stack) log.debug(error.stack);
}

/**
 * The last net under both binaries: a rejection or exception that escaped every handler is
 * logged and survived. Each stream and session handler catches its own errors with context;
 * reaching this is a bug, and it must not cost the other streams.
 */
export function installFaultHandlers(): void {
  process.on("unhandledRejection", (reason) => logFault("unhandled rejection", reason));
  process.on("uncaughtException", (error) => logFault("uncaught exception", error));
}
