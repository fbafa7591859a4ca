// The text log lines, as consola's default (fancy) reporter writes them: an icon (`ℹ`, `✔`, `⚙`)
// or a badge for warnings and errors (` WARN `, ` ERROR `, on lines of their own), `code` in
// cyan, and on a terminal of 80 columns or more the time at the right edge. Colours follow
// consola's rule: only when stdout is a terminal (and TERM is not dumb), NO_COLOR and
// FORCE_COLOR respected. Widths come from `Bun.stringWidth` rather than string-width's tables.
import fs from "node:fs";
import { sep } from "node:path";
import { formatWithOptions, type InspectOptions } from "node:util";
import type { ConsolaReporter, LogObject } from "consola/core";

/**
 * Writes `text` and a newline to stdout or stderr, straight to the file descriptor. Node's
 * `process.stdout` and `process.stderr` are stream objects whose code would stay loaded for the
 * process's lifetime only to print a line now and then; `console.error` paints a terminal red.
 */
export function writeLines(to: "stdout" | "stderr", text: string): void {
  const bytes = Buffer.from(`${text}\n`);
  // Once a line has gone to the stream, every later one follows it there, in order.
  if (streamed[to]) {
    process[to].write(bytes);
    return;
  }
  let written = 0;
  try {
    while (written < bytes.length) written += fs.writeSync(to === "stdout" ? 1 : 2, bytes, written);
  } catch (error) {
    // A descriptor left non-blocking by whoever started the process: the stream waits for it.
    // Any other failure (EPIPE: the reader is gone) has nowhere to be reported.
    if ((error as NodeJS.ErrnoException).code !== "EAGAIN") return;
    streamed[to] = true;
    process[to].write(bytes.subarray(written));
  }
}

const streamed = { stdout: false, stderr: false };

/**
 * isatty(3). Bun answers it natively through the binding Node's own tty module is built on;
 * loading node:tty itself (net.Socket and streams behind it) would cost every process about a MiB
 * of resident memory to answer two questions at start-up.
 */
function isatty(fd: number): boolean {
  try {
    return (process.binding("tty_wrap") as { isTTY(fd: number): boolean }).isTTY(fd);
  } catch {
    return (require("node:tty") as typeof import("node:tty")).isatty(fd);
  }
}

const env = process.env;
const useColor =
  !("NO_COLOR" in env) &&
  ("FORCE_COLOR" in env ||
    (isatty(1) && env.TERM !== undefined && env.TERM !== "" && env.TERM !== "dumb") ||
    ("CI" in env && ("GITHUB_ACTIONS" in env || "GITLAB_CI" in env || "CIRCLECI" in env)));

type Paint = (text: string) => string;

/** An SGR pair, re-opened after any close inside the text as consola's colours do. */
function sgr(open: number, close: number): Paint {
  if (!useColor) return (text) => text;
  const start = `\x1b[${open}m`;
  const end = `\x1b[${close}m`;
  return (text) => (text === "" ? "" : start + text.replaceAll(end, start) + end);
}

const paint = {
  black: sgr(30, 39),
  red: sgr(31, 39),
  green: sgr(32, 39),
  yellow: sgr(33, 39),
  magenta: sgr(35, 39),
  cyan: sgr(36, 39),
  white: sgr(37, 39),
  gray: sgr(90, 39),
  underline: sgr(4, 24),
};

const background: Record<string, Paint> = {
  red: sgr(41, 49),
  green: sgr(42, 49),
  yellow: sgr(43, 49),
  magenta: sgr(45, 49),
  cyan: sgr(46, 49),
  white: sgr(47, 49),
  gray: sgr(47, 49),
};

type Color = keyof typeof background;

const TYPE_COLOR: Record<string, Color> = {
  info: "cyan",
  fail: "red",
  success: "green",
  ready: "green",
  start: "magenta",
};
const LEVEL_COLOR: Record<number, Color> = { 0: "red", 1: "yellow" };

// The Linux console's font lacks these symbols; consola falls back to ASCII there.
const unicode = env.TERM !== "linux";
const icon = (symbol: string, fallback: string) => (unicode ? symbol : fallback);
const TYPE_ICON: Record<string, string> = {
  error: icon("\u2716", "\xd7"),
  fatal: icon("\u2716", "\xd7"),
  ready: icon("\u2714", "\u221a"),
  warn: icon("\u26a0", "\u203c"),
  info: icon("\u2139", "i"),
  success: icon("\u2714", "\u221a"),
  debug: icon("\u2699", "D"),
  trace: icon("\u2192", "\u2192"),
  fail: icon("\u2716", "\xd7"),
  start: icon("\u25d0", "o"),
  log: "",
};

interface FormatOptions extends InspectOptions {
  columns: number;
  errorLevel?: number;
}

/** The terminal's width when stderr is one, else 0 (no right-aligned time). */
function stderrColumns(): number {
  return isatty(2) ? process.stderr.columns || 0 : 0;
}

export const textReporter: ConsolaReporter = {
  log(entry: LogObject) {
    writeLines("stderr", formatEntry(entry, { columns: stderrColumns(), colors: false, compact: true }));
  },
};

function formatEntry(entry: LogObject, opts: FormatOptions): string {
  const [message = "", ...additional] = formatArgs(entry.args, opts).split("\n");
  const color = TYPE_COLOR[entry.type] ?? LEVEL_COLOR[entry.level] ?? "gray";
  const badge = entry.badge ?? entry.level < 2;
  const type = badge ? typeBadge(entry, color) : typeIcon(entry, color);
  const tag = entry.tag ? paint.gray(entry.tag) : "";
  const left = joinNonEmpty([type, highlight(message)]);
  const date = opts.columns ? paint.gray(entry.date.toLocaleTimeString()) : "";
  const right = joinNonEmpty([tag, date]);
  const space = opts.columns - width(left) - width(right) - 2;
  let line =
    space > 0 && opts.columns >= 80
      ? left + " ".repeat(space) + right
      : (right ? `${paint.gray(`[${right}]`)} ` : "") + left;
  line += highlight(additional.length > 0 ? `\n${additional.join("\n")}` : "");
  if (entry.type === "trace") {
    const error = new Error(`Trace: ${entry.message}`);
    line += formatStack(error.stack ?? "", error.message, opts);
  }
  return badge ? `\n${line}\n` : line;
}

function typeBadge(entry: LogObject, color: Color): string {
  const paintBackground = background[color] ?? (background.white as Paint);
  return paintBackground(paint.black(` ${entry.type.toUpperCase()} `));
}

function typeIcon(entry: LogObject, color: Color): string {
  const symbol = TYPE_ICON[entry.type] ?? String(entry.icon || entry.type);
  const paintColor = (paint as Record<string, Paint>)[color] ?? paint.white;
  return symbol ? paintColor(symbol) : "";
}

/** `code` in cyan and ` _word_ ` underlined, as consola marks them up. */
function highlight(text: string): string {
  return text
    .replace(/`([^`]+)`/gm, (_, m: string) => paint.cyan(m))
    .replace(/\s+_([^_]+)_\s+/gm, (_, m: string) => ` ${paint.underline(m)} `);
}

// consola's string-width counts these icons (emoji in text presentation) two columns wide.
const WIDE_ICONS = /[\u203c\u2139\u2699\u26a0\u2714\u2716]/g;

function width(text: string): number {
  return Bun.stringWidth(text) + (text.match(WIDE_ICONS)?.length ?? 0);
}

function joinNonEmpty(parts: string[]): string {
  return parts.filter(Boolean).join(" ");
}

function formatArgs(args: unknown[], opts: FormatOptions): string {
  const formatted = args.map((arg) =>
    arg && typeof (arg as Error).stack === "string" ? formatError(arg as Error, opts) : arg,
  );
  return formatWithOptions(opts, ...formatted);
}

function formatError(error: Error, opts: FormatOptions): string {
  const message = error.message ?? formatWithOptions(opts, error);
  const stack = error.stack ? formatStack(error.stack, message, opts) : "";
  const level = opts.errorLevel ?? 0;
  const causedPrefix = level > 0 ? `${"  ".repeat(level)}[cause]: ` : "";
  const cause = error.cause
    ? `\n\n${formatError(error.cause as Error, { ...opts, errorLevel: level + 1 })}`
    : "";
  return `${causedPrefix + message}\n${stack}${cause}`;
}

function formatStack(stack: string, message: string, opts: FormatOptions): string {
  const indent = "  ".repeat((opts.errorLevel ?? 0) + 1);
  const cwd = process.cwd() + sep;
  const lines = stack
    .split("\n")
    .splice(message.split("\n").length)
    .map((l) => l.trim().replace("file://", "").replace(cwd, ""));
  const styled = lines.map(
    (l) =>
      `  ${l.replace(/^at +/, (m) => paint.gray(m)).replace(/\((.+)\)/, (_, m: string) => `(${paint.cyan(m)})`)}`,
  );
  return `\n${indent}${styled.join(`\n${indent}`)}`;
}
