import { afterEach, describe, expect, spyOn, test } from "bun:test";
import fs from "node:fs";
import { configureLogging, log } from "./log.ts";

// Other test files share this process and its quieter default level.
const initialLevel = log.level;
afterEach(() => {
  configureLogging("info", "text");
  log.level = initialLevel;
});

/** What `emit` writes to one file descriptor (1 stdout, 2 stderr), one string per write. */
function capture(fd: number, emit: () => void): string[] {
  const writes: string[] = [];
  // Log lines go straight to the file descriptor (`writeLines`), not through process.stdout.
  const spy = spyOn(fs, "writeSync").mockImplementation(((to: number, chunk: Uint8Array) => {
    if (to === fd) writes.push(Buffer.from(chunk).toString());
    return chunk.byteLength;
  }) as typeof fs.writeSync);
  try {
    emit();
  } finally {
    spy.mockRestore();
  }
  for (const write of writes) expect(write.endsWith("\n")).toBe(true);
  return writes;
}

function captureJson(emit: () => void): Record<string, unknown>[] {
  return capture(1, emit).map((line) => JSON.parse(line));
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

  test("text lines look as consola's own reporter writes them, on stderr", () => {
    configureLogging("debug", "text");
    const lines = capture(2, () => {
      log.info("ingress listening on `http://127.0.0.1:8082`");
      log.success("tunnel ready");
      log.warn("careful");
      log.error(new Error("boom"));
    }).map((line) => Bun.stripANSI(line));
    // A terminal of 80 columns or more also gets the time at the right edge.
    expect(lines[0]).toStartWith("\u2139 ingress listening on http://127.0.0.1:8082");
    expect(lines[1]).toStartWith("\u2714 tunnel ready");
    expect(lines[2]).toStartWith("\n WARN  careful");
    expect(lines[3]).toStartWith("\n ERROR  boom");
    expect(lines[3]).toContain("log.test.ts");
  });
});
