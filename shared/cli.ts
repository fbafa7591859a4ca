// What both command lines need around citty: it ignores unknown flags and exits 1 on every error,
// while a mistyped flag must fail loudly and usage errors exit 2.
import { type ArgsDef, type CommandDef, defineCommand, runMain } from "citty";
import type { Flags } from "./config.ts";
import { UsageError } from "./errors.ts";
import { VERSION } from "./version.ts";

/**
 * Flags a command takes more than once, each time adding to one comma-separated list
 * (`--gateway a --gateway b` is `--gateway a,b`). Declared beside the command's `ArgsDef`.
 */
export type ListFlags<A extends ArgsDef> = ReadonlySet<keyof A & string>;

/** One flag as written: `--name value`, `--name=value` or a boolean `--name` / `--no-name`. */
interface WrittenFlag {
  /** The flag's declared name: `--no-tls` is `tls`. */
  key: string;
  value: string | undefined;
}

/** The flags in `rawArgs`; anything `argsDef` does not declare, or a flag without its value, throws. */
function* writtenFlags(rawArgs: string[], argsDef: ArgsDef): Generator<WrittenFlag> {
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i] as string;
    if (!arg.startsWith("--") || arg === "--") throw new UsageError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const def = argsDef[name] ?? negatedBoolean(name, argsDef);
    if (!def || def.type === "positional") {
      throw new UsageError(`unknown flag --${name} (--help lists the flags)`);
    }
    const key = name.replace(/^no-/, "");
    if (def.type === "boolean") {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      yield { key, value: undefined };
    } else if (eq === -1) {
      if (i + 1 >= rawArgs.length) throw new UsageError(`--${name} needs a value`);
      i++;
      yield { key, value: rawArgs[i] };
    } else {
      yield { key, value: arg.slice(eq + 1) };
    }
  }
}

/** Rejects anything `argsDef` does not declare, a flag without its value and a repeated flag. */
export function rejectUnknownFlags<A extends ArgsDef>(
  rawArgs: string[],
  argsDef: A,
  lists: ListFlags<A> = new Set(),
): void {
  const seen = new Set<string>();
  for (const { key } of writtenFlags(rawArgs, argsDef)) {
    if (seen.has(key) && !lists.has(key)) throw new UsageError(`--${key} is given more than once`);
    seen.add(key);
  }
}

function negatedBoolean(name: string, argsDef: ArgsDef) {
  const def = name.startsWith("no-") ? argsDef[name.slice(3)] : undefined;
  return def?.type === "boolean" ? def : undefined;
}

/**
 * The declared flags' values, keyed by their names as typed (`http-port`). citty keeps only the
 * last value of a repeated flag, so a list flag's values are read from `rawArgs` instead.
 */
export function flagValues<A extends ArgsDef>(
  args: Record<string, unknown>,
  argsDef: A,
  rawArgs: string[] = [],
  lists: ListFlags<A> = new Set(),
): Flags {
  const flags: Flags = {};
  for (const name of Object.keys(argsDef)) {
    const value = args[name];
    if (typeof value === "string" || typeof value === "boolean") flags[name] = value;
  }
  for (const name of lists) {
    const values = [...writtenFlags(rawArgs, argsDef)].filter((f) => f.key === name).map((f) => f.value);
    if (values.length > 0) flags[name] = values.join(",");
  }
  return flags;
}

/** For the root command: the first argument must name one of its subcommands. */
export function requireCommand(rawArgs: string[], commands: string[], binary: string): void {
  const [first] = rawArgs;
  const list = commands.join(", ");
  if (first === undefined) throw new UsageError(`missing command (${list}); see ${binary} --help`);
  if (!commands.includes(first)) {
    const what = first.startsWith("-") ? "flag" : "command";
    throw new UsageError(`unknown ${what} '${first}' (commands: ${list}); see ${binary} --help`);
  }
}

/**
 * Ends start-up as far as the JIT is concerned. The binaries are built with `--compile-jit-policy`
 * (Makefile), which keeps code that runs only while starting (flag and config parsing, protobuf's
 * descriptor decoding) in the interpreter instead of compiling it: that compiled code, and the
 * compiler's own pages, would stay resident in an idle process. From here the data path is
 * compiled as usual.
 */
export function startupDone(): void {
  Bun.unsafe.setJITPolicy(1);
}

/** Usage errors exit 2, as shells and CI expect of a bad command line; anything else exits 1. */
export function exitOnStartupError(error: unknown): never {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(error instanceof UsageError ? 2 : 1);
}

/** Flags both binaries take for their logs. */
export const loggingArgs = {
  "log-level": {
    type: "string",
    valueHint: "debug|info|warn|error",
    description: "(INDRANET_LOG_LEVEL; default info)",
  },
  "log-format": {
    type: "string",
    valueHint: "text|json",
    description: "(INDRANET_LOG_FORMAT; default text)",
  },
} as const satisfies ArgsDef;

/** Runs a binary whose every action is a subcommand; a missing or unknown one is a usage error. */
export async function runBinary(
  name: string,
  description: string,
  // biome-ignore lint/suspicious/noExplicitAny: citty's subcommands carry their own argument types
  subCommands: Record<string, CommandDef<any>>,
): Promise<void> {
  const main = defineCommand({
    meta: { name, version: VERSION, description },
    subCommands,
    setup({ rawArgs }) {
      try {
        requireCommand(rawArgs, Object.keys(subCommands), name);
      } catch (error) {
        exitOnStartupError(error);
      }
    },
  });
  await runMain(main);
}
