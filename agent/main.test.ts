import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "main.ts");

// The caller's INDRANET_* variables must not leak into what these tests expect.
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("INDRANET_")));

function run(...args: string[]) {
  const result = Bun.spawnSync([process.execPath, MAIN, ...args], { env });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe("agent-tunnel command line", () => {
  test("exits 2 naming an unknown flag", () => {
    const { code, stderr } = run("connect", "--bogus", "x");
    expect(code).toBe(2);
    expect(stderr).toContain("error: unknown flag --bogus");
  });

  test("exits 2 naming a missing required flag", () => {
    const { code, stderr } = run("connect", "--gateway", "ws://127.0.0.1:1");
    expect(code).toBe(2);
    expect(stderr).toContain("error: --token is required (or set INDRANET_TOKEN)");
  });

  test("takes --gateway more than once but no other flag", () => {
    const gateways = run("connect", "--gateway", "ws://127.0.0.1:1", "--gateway", "ws://127.0.0.1:2");
    expect(gateways.code).toBe(2);
    expect(gateways.stderr).toContain("error: --token is required");
    const { code, stderr } = run("connect", "--to", "3000", "--to", "4000");
    expect(code).toBe(2);
    expect(stderr).toContain("error: --to is given more than once");
  });

  test("exits 2 when a flag has no value", () => {
    const { code, stderr } = run("connect", "--to");
    expect(code).toBe(2);
    expect(stderr).toContain("--to needs a value");
  });

  test("prints its version and the help of connect", () => {
    const version = run("--version");
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = run("connect", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--secret-file");
  });
});
