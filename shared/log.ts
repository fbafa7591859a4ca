// Logging for both binaries: consola's readable output on a terminal, or JSON lines for systemd
// and log shippers (`--log-format json`).
//
// consola's core only: its default entry also loads a fancy reporter with string-width's emoji and
// east-asian-width tables, std-env and a prompt module (node:readline, node:tty), which together
// cost a process that idles at 30-40 MiB several MiB of its resident memory. `text-reporter.ts`
// writes the same lines as that reporter.
import { format } from "node:util";
import { type ConsolaReporter, createConsola, type LogObject } from "consola/core";
import { textReporter, writeLines } from "./text-reporter.ts";

export { writeLines };

/** consola's numeric levels for the names the CLI accepts. */
export const LOG_LEVELS = { debug: 4, info: 3, warn: 1, error: 0 } as const;

export type LogLevel = keyof typeof LOG_LEVELS;
export type LogFormat = "text" | "json";
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** consola's own default: quieter under a test runner, everything with DEBUG set. */
function defaultLevel(env: Record<string, string | undefined>): number {
  const on = (value: string | undefined) => value !== undefined && value !== "" && value !== "false";
  if (on(env.DEBUG)) return LOG_LEVELS.debug;
  if (env.NODE_ENV === "test" || on(env.TEST)) return LOG_LEVELS.warn;
  return LOG_LEVELS.info;
}

// Text goes to stderr so that stdout stays free for whatever a command prints as its result.
export const log = createConsola({ level: defaultLevel(process.env), reporters: [textReporter] });

export function isLogLevel(name: string): name is LogLevel {
  return Object.hasOwn(LOG_LEVELS, name);
}

let jsonLogging = false;

export function configureLogging(level: string, logFormat: LogFormat): void {
  // Assigned even for the default: consola starts at `warn` under `bun test` (NODE_ENV=test).
  log.level = isLogLevel(level) ? LOG_LEVELS[level] : LOG_LEVELS.info;
  jsonLogging = logFormat === "json";
  log.setReporters([jsonLogging ? jsonReporter : textReporter]);
}

/** True with `--log-format json`: only then is it worth building a fields object for a line. */
export function isJsonLogging(): boolean {
  return jsonLogging;
}

/**
 * One object per line: `{"time", "level", "msg", ...fields}`. Plain-object arguments become fields
 * rather than text; any of them counts, not only the last, because consola appends its own
 * "(repeated N times)" argument after a throttled call's fields.
 */
const jsonReporter: ConsolaReporter = {
  log(entry: LogObject) {
    const line: Record<string, unknown> = {
      time: entry.date.toISOString(),
      level: levelName(entry.level),
      msg: format(...entry.args.filter((arg) => !isPlainObject(arg))),
    };
    for (const arg of entry.args) if (isPlainObject(arg)) addFields(line, arg);
    writeLines("stdout", JSON.stringify(line));
  },
};

function addFields(line: Record<string, unknown>, fields: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(fields)) {
    // time, level and msg keep their meaning whatever a caller names its fields.
    if (Object.hasOwn(line, key)) continue;
    // JSON.stringify turns an Error into {}.
    line[key] = value instanceof Error ? value.message : value;
  }
}

function levelName(level: number): string {
  if (level <= LOG_LEVELS.error) return "error";
  if (level <= LOG_LEVELS.warn) return "warn";
  if (level <= LOG_LEVELS.info) return "info";
  return "debug";
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
