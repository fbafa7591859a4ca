import { describe, expect, test } from "bun:test";
import type { ArgsDef } from "citty";
import { flagValues, type ListFlags, rejectUnknownFlags } from "./cli.ts";
import { UsageError } from "./errors.ts";

const ARGS = {
  gateway: { type: "string" },
  to: { type: "string" },
  tls: { type: "boolean" },
} satisfies ArgsDef;
const LISTS: ListFlags<typeof ARGS> = new Set(["gateway"]);

/** Expects `run` to throw a UsageError saying exactly `message`. */
function refuses(run: () => unknown, message: string): void {
  expect(run).toThrow(UsageError);
  expect(run).toThrow(new UsageError(message));
}

describe("command-line flags", () => {
  test("a list flag may be given again, its values joined in order", () => {
    const rawArgs = ["--gateway", "ws://a", "--to", "3000", "--gateway=ws://b,ws://c", "--gateway", "ws://d"];
    rejectUnknownFlags(rawArgs, ARGS, LISTS);
    // citty keeps only the last value of a repeated flag.
    const args = { gateway: "ws://d", to: "3000" };
    expect(flagValues(args, ARGS, rawArgs, LISTS)).toEqual({
      gateway: "ws://a,ws://b,ws://c,ws://d",
      to: "3000",
    });
  });

  test("any other flag given twice is refused by name", () => {
    refuses(() => rejectUnknownFlags(["--to", "1", "--to=2"], ARGS, LISTS), "--to is given more than once");
    refuses(() => rejectUnknownFlags(["--tls", "--no-tls"], ARGS, LISTS), "--tls is given more than once");
    refuses(
      () => rejectUnknownFlags(["--gateway", "a", "--gateway", "b"], ARGS),
      "--gateway is given more than once",
    );
  });

  test("unknown flags, stray arguments and missing values are refused by name", () => {
    refuses(
      () => rejectUnknownFlags(["--bogus", "x"], ARGS, LISTS),
      "unknown flag --bogus (--help lists the flags)",
    );
    refuses(() => rejectUnknownFlags(["stray"], ARGS, LISTS), "unexpected argument 'stray'");
    refuses(() => rejectUnknownFlags(["--gateway"], ARGS, LISTS), "--gateway needs a value");
    refuses(() => rejectUnknownFlags(["--tls=yes"], ARGS, LISTS), "--tls takes no value");
  });

  test("a list flag not given is left to its variable", () => {
    expect(flagValues({ to: "3000" }, ARGS, ["--to", "3000"], LISTS)).toEqual({ to: "3000" });
  });
});
