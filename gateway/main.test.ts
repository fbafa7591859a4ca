import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "main.ts");

// The caller's INDRANET_* variables must not leak into what these tests expect.
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("INDRANET_")));

function run(...args: string[]) {
  const result = Bun.spawnSync([process.execPath, MAIN, ...args], { env });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe("gateway-tunnel command line", () => {
  test("exits 2 naming the flag when --http-port is not a port", () => {
    const { code, stderr } = run("serve", "--http-port", "abc");
    expect(code).toBe(2);
    expect(stderr).toContain("error: --http-port: expected a port from 0 to 65535, got 'abc'");
  });

  test("exits 2 naming an unknown flag", () => {
    const { code, stderr } = run("serve", "--bogus", "x");
    expect(code).toBe(2);
    expect(stderr).toContain("unknown flag --bogus");
  });

  test("exits 2 without a command or with an unknown one", () => {
    expect(run().code).toBe(2);
    const { code, stderr } = run("srve");
    expect(code).toBe(2);
    expect(stderr).toContain("unknown command 'srve'");
  });

  test("prints its version and the help of serve", () => {
    const version = run("--version");
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = run("serve", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--http-port");
  });

  test("in --dev prints the agent command to run and stops on SIGTERM", async () => {
    const child = Bun.spawn(
      [process.execPath, MAIN, "serve", "--dev", "--bind", "127.0.0.1", "--http-port", "0", "--ws-port", "0"],
      { env, stdout: "pipe", stderr: "pipe" },
    );
    let output = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      output += decoder.decode(chunk, { stream: true });
      if (output.includes("then open")) break;
    }
    expect(output).toMatch(
      /INDRANET_SECRET=[0-9a-f]{64} agent-tunnel connect --gateway ws:\/\/127\.0\.0\.1:\d+ --token dev-[0-9a-f]+ --id dev/,
    );
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  });
});
