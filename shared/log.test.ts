import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { configureLogging, log } from "./log.ts";

// Other test files share this process and its quieter default level.
const initialLevel = log.level;
afterEach(() => {
  configureLogging("info", "text");
  log.level = initialLevel;
});

function captureJson(emit: () => void): Record<string, unknown>[] {
  const lines: string[] = [];
  const spy = spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    emit();
  } finally {
    spy.mockRestore();
  }
  return lines.map((line) => {
    expect(line.endsWith("\n")).toBe(true);
    return JSON.parse(line);
  });
}

describe("logging", () => {
  test("writes one JSON object per line with fields from a trailing object", () => {
    configureLogging("info", "json");
    const [line] = captureJson(() => log.info("agent connected", { agent: "pi", msg: "ignored" }));
    expect(line).toMatchObject({ level: "info", msg: "agent connected", agent: "pi" });
    expect(new Date(line?.time as string).toISOString()).toBe(line?.time as string);
  });

  test("maps consola's levels to debug, info, warn and error", () => {
    configureLogging("debug", "json");
    const lines = captureJson(() => {
      log.debug("d");
      log.success("s");
      log.warn("w");
      log.error(new Error("boom"));
    });
    expect(lines.map((l) => l.level)).toEqual(["debug", "info", "warn", "error"]);
    expect(lines[3]?.msg).toContain("boom");
  });

  test("an explicit level wins over the quieter default under bun test", () => {
    configureLogging("info", "json");
    expect(captureJson(() => log.info("shown"))).toHaveLength(1);
    configureLogging("error", "json");
    expect(captureJson(() => log.warn("hidden"))).toHaveLength(0);
  });
});
