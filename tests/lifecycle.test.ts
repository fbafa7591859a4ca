// Stopping and reloading without dropping work: SIGTERM lets a slow response finish on either
// side, and SIGHUP changes the gateway's tokens while it runs.
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { Agent, DEFAULT_TOKEN, eventually, Gateway, type TokenSpec, tomlFor } from "./harness.ts";
import { startEchoService } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The response the slow service sends: a first part at once, the rest after SLOW_MS. */
const SLOW_MS = 5_000;
const FIRST = "first part;";
const REST = "x".repeat(100_000);

function startSlowService(): Server<undefined> {
  const service = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch(req) {
      if (new URL(req.url).pathname !== "/slow") return new Response("quick");
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode(FIRST));
          await Bun.sleep(SLOW_MS);
          controller.enqueue(encoder.encode(REST));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-length": String(FIRST.length + REST.length) } });
    },
  });
  cleanups.push(() => service.stop(true));
  return service;
}

async function gatewayFor(options: Parameters<typeof Gateway.start>[0] = {}): Promise<Gateway> {
  const gateway = await Gateway.start(options);
  cleanups.push(() => gateway.stop());
  return gateway;
}

async function agentFor(
  gateway: Gateway,
  to: number,
  options: Partial<ConstructorParameters<typeof Agent>[1]> = {},
) {
  const agent = await Agent.start(gateway, { id: "pi-life", to, ...options });
  cleanups.push(() => agent.stop());
  return agent;
}

/** Reads the first chunk, so the test knows the response is in flight, then the rest. */
async function startSlowRequest(gateway: Gateway, agentId = "pi-life") {
  const res = await gateway.fetch(agentId, "/slow");
  expect(res.status).toBe(200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes(FIRST)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  })();
  return { rest };
}

function adminPort(proc: { waitFor(p: RegExp): Promise<RegExpMatchArray> }): Promise<number> {
  return proc.waitFor(/admin listening on http:\/\/[^\s]+:(\d+)/).then((m) => Number(m[1]));
}

describe("SIGTERM", () => {
  test("the gateway hands its clients over, finishes a slow response with its full body, then exits 0", async () => {
    const service = startSlowService();
    const gateway = await gatewayFor({ args: ["--admin", "127.0.0.1:0", "--shutdown-grace", "20"] });
    const admin = await adminPort(gateway.proc);
    const agent = await agentFor(gateway, service.port as number);
    const { rest } = await startSlowRequest(gateway);

    gateway.proc.child.kill("SIGTERM");
    await gateway.proc.waitFor(/draining: 1 request/);
    // For a moment it still answers, each answer closing its connection, so that a client's next
    // request opens a new one and reaches the process replacing this one (a restart).
    expect((await fetch(`http://127.0.0.1:${admin}/healthz`)).status).toBe(503);
    const last = await gateway.fetch("pi-life", "/quick");
    expect(last.status).toBe(200);
    expect(last.headers.get("connection")).toBe("close");
    // Then its listeners close: new connections are refused.
    await eventually(async () => {
      await expect(gateway.fetch("pi-life", "/quick")).rejects.toThrow();
    });
    // The agent was told and dials again, while the stream goes on on the old connection.
    await agent.proc.waitFor(/gateway is going away/);

    expect(await rest).toBe(FIRST + REST);
    expect(await gateway.proc.exited(15_000)).toBe(0);
  }, 30_000);

  test("the agent finishes a slow response, then exits 0; a request meanwhile waits for its successor", async () => {
    const service = startSlowService();
    const gateway = await gatewayFor();
    const agent = await agentFor(gateway, service.port as number, { args: ["--shutdown-grace", "20"] });
    const { rest } = await startSlowRequest(gateway);

    agent.proc.child.kill("SIGTERM");
    await agent.proc.waitFor(/finishing 1 stream/);
    // The stopping agent declines it (nothing ran); the gateway holds it for the agent's return.
    const waiting = gateway.fetch("pi-life", "/quick");
    await Bun.sleep(200);
    const successor = await agentFor(gateway, service.port as number);
    const answer = await waiting;
    expect(answer.status).toBe(200);
    expect(await answer.text()).toBe("quick");

    expect(await rest).toBe(FIRST + REST);
    expect(await agent.proc.exited(15_000)).toBe(0);
    await successor.stop();
  }, 30_000);

  test("a request for an agent that stopped for good fails once the hold is over", async () => {
    const service = startSlowService();
    const gateway = await gatewayFor({ args: ["--hold", "1"] });
    const agent = await agentFor(gateway, service.port as number, { args: ["--shutdown-grace", "20"] });
    const { rest } = await startSlowRequest(gateway);
    agent.proc.child.kill("SIGTERM");
    await agent.proc.waitFor(/finishing 1 stream/);
    const refused = await gateway.fetch("pi-life", "/quick");
    expect(refused.status).toBe(502);
    expect(refused.headers.get("x-tunnel-error")).toBe("agent_gone");
    expect(await rest).toBe(FIRST + REST);
  }, 30_000);
});

describe("SIGHUP", () => {
  const SECOND: TokenSpec = { token: "tok-second", secret: "second-second-second-second", agents: ["pi-2"] };

  test("a new token works at once, a removed token's sessions close, a broken file changes nothing", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const gateway = await gatewayFor();
    const configPath = join(gateway.dir, "gateway.toml");
    const reloaded = async (count: number) => {
      gateway.proc.child.kill("SIGHUP");
      await gateway.proc.waitFor(new RegExp(`(config reloaded[^\\n]*\\n[^]*){${count}}`));
    };

    const first = await agentFor(gateway, service.port, { id: "pi-1" });
    const early = new Agent(gateway, { id: "pi-2", to: service.port, token: SECOND });
    cleanups.push(() => early.stop());
    expect(await early.proc.exited()).toBe(1);

    writeFileSync(configPath, tomlFor([DEFAULT_TOKEN, SECOND]));
    await reloaded(1);
    const second = await agentFor(gateway, service.port, { id: "pi-2", token: SECOND });
    expect((await gateway.fetch("pi-2", "/status/201")).status).toBe(201);

    writeFileSync(configPath, tomlFor([SECOND]));
    await reloaded(2);
    await gateway.proc.waitFor(/agent pi-1: token revoked/);
    expect(await first.proc.exited()).toBe(1);
    expect((await gateway.fetch("pi-1", "/")).status).toBe(404);

    writeFileSync(configPath, "this is [not toml");
    gateway.proc.child.kill("SIGHUP");
    await gateway.proc.waitFor(/reload failed, the running config stays: .*gateway\.toml/);
    expect((await gateway.fetch("pi-2", "/status/202")).status).toBe(202);
    await second.stop();
  }, 30_000);
});

describe("systemd units", () => {
  test("systemd-analyze verify accepts both units", () => {
    const analyze = Bun.which("systemd-analyze");
    if (!analyze) throw new Error("systemd-analyze is missing: run scripts/install-test-deps.sh");
    // verify insists that ExecStart's binary exists: point it at a stand-in.
    const dir = mkdtempSync(join(tmpdir(), "indranet-units-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const binary = join(dir, "tunnel");
    writeFileSync(binary, "#!/bin/sh\n");
    chmodSync(binary, 0o755);
    const source = join(import.meta.dir, "..", "packaging", "systemd");
    const units = readdirSync(source).filter((name) => name.endsWith(".service"));
    expect(units.sort()).toEqual(["agent-tunnel@.service", "gateway-tunnel.service"]);
    for (const name of units) {
      const text = readFileSync(join(source, name), "utf8").replaceAll(/\/usr\/local\/bin\/[a-z-]+/g, binary);
      writeFileSync(join(dir, name), text);
    }
    // A template is verified through one of its instances.
    writeFileSync(
      join(dir, "agent-tunnel@pi-test.service"),
      readFileSync(join(dir, "agent-tunnel@.service")),
    );
    for (const unit of ["gateway-tunnel.service", "agent-tunnel@pi-test.service"]) {
      const run = Bun.spawnSync([analyze, "verify", join(dir, unit)], { cwd: dir });
      const output = run.stdout.toString() + run.stderr.toString();
      expect({ unit, exitCode: run.exitCode, output }).toEqual({ unit, exitCode: 0, output: "" });
    }
  });
});
