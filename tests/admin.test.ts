// What an operator sees: health, Prometheus metrics, the agent list (API and CLI) and JSON logs.
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Agent, eventually, Gateway, scrape } from "./harness.ts";
import { startEchoService } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(gatewayArgs: string[] = [], agentArgs: string[] = []) {
  const service = startEchoService();
  cleanups.push(() => service.stop(true));
  const gateway = await Gateway.start({ args: ["--admin", "127.0.0.1:0", ...gatewayArgs] });
  cleanups.push(() => gateway.stop());
  const [, port] = await gateway.proc.waitFor(/admin listening on http:\/\/[^\s]+:(\d+)/);
  const agent = await Agent.start(gateway, { id: "pi-admin", to: service.port, args: agentArgs });
  cleanups.push(() => agent.stop());
  return { gateway, agent, admin: `http://127.0.0.1:${port}` };
}

describe("gateway admin listener", () => {
  test("healthz answers 200 while serving", async () => {
    const { admin } = await setup();
    const res = await fetch(`${admin}/healthz`);
    expect(res.status).toBe(200);
    expect((await fetch(`${admin}/nothing`)).status).toBe(404);
  });

  test("metrics counters move as requests pass, and open streams return to 0", async () => {
    const { gateway, admin } = await setup();
    const before = await scrape(admin);
    expect(before.get("indranet_agents_connected")).toBe(1);
    for (let i = 0; i < 3; i++) expect((await gateway.fetch("pi-admin", "/bytes/1000")).status).toBe(200);
    // An id no token allows: refused at once (an allowed one may be held just after start).
    expect((await gateway.fetch("absent", "/")).status).toBe(404);

    await eventually(async () => {
      const after = await scrape(admin);
      const moved = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      expect(moved('indranet_requests_total{class="2xx"}')).toBe(3);
      expect(moved('indranet_requests_total{class="4xx"}')).toBe(1);
      expect(moved("indranet_request_duration_seconds_count")).toBe(4);
      expect(moved("indranet_response_bytes_total")).toBe(3000);
      expect(moved("indranet_tunnel_bytes_received_total")).toBeGreaterThan(3000);
      expect(moved("indranet_tunnel_bytes_sent_total")).toBeGreaterThan(0);
      expect(after.get("indranet_streams_open")).toBe(0);
    });
  });

  test("refused agents are counted by reason", async () => {
    const { gateway, admin } = await setup();
    const wrong = new Agent(gateway, {
      id: "pi-wrong",
      to: 1,
      token: { token: "tok-test", secret: "not-the-right-secret-at-all", agents: [] },
    });
    cleanups.push(() => wrong.stop());
    expect(await wrong.proc.exited()).toBe(1);
    const samples = await scrape(admin);
    expect(samples.get('indranet_auth_failures_total{reason="bad_signature"}')).toBe(1);
  });

  test("/api/agents and `gateway-tunnel agents` list the connected agent", async () => {
    const { admin } = await setup();
    const list = (await (await fetch(`${admin}/api/agents`)).json()) as Record<string, unknown>[];
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: "pi-admin", remote_address: "127.0.0.1", streams: 0 });
    expect(Date.parse(String(list[0]?.connected_since))).toBeLessThanOrEqual(Date.now());

    const cli = Bun.spawnSync(
      [
        process.execPath,
        join(import.meta.dir, "..", "gateway", "main.ts"),
        "agents",
        "--admin",
        admin.slice(7),
      ],
      { env: { ...process.env, NODE_ENV: "production" } },
    );
    expect(cli.exitCode).toBe(0);
    const [header, row] = cli.stdout.toString().trimEnd().split("\n");
    expect(header).toMatch(/^ID\s+REMOTE\s+CONNECTED\s+LAST SEEN\s+STREAMS\s+BYTES IN\s+BYTES OUT$/);
    expect(row).toMatch(/^pi-admin\s+127\.0\.0\.1\s+\d+s ago/);
  });
});

describe("agent admin listener", () => {
  test("serves healthz and metrics with its open streams", async () => {
    const { agent, gateway } = await setup([], ["--admin", "127.0.0.1:0"]);
    const [, port] = await agent.proc.waitFor(/admin listening on http:\/\/[^\s]+:(\d+)/);
    const admin = `http://127.0.0.1:${port}`;
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect((await gateway.fetch("pi-admin", "/")).status).toBe(200);
    const samples = await scrape(admin);
    expect(samples.get("indranet_streams_open")).toBe(0);
    expect(samples.get("indranet_gateway_connections")).toBe(1);
  });
});

describe("logs", () => {
  test("--log-format json writes one JSON object per line, with one access line per request", async () => {
    const { gateway } = await setup(["--log-format", "json"]);
    const res = await gateway.fetch("pi-admin", "/hello?secret=1");
    expect(res.status).toBe(200);
    const requestId = res.headers.get("x-request-id");
    await gateway.proc.waitFor(new RegExp(`"request_id":"${requestId}"`));
    const lines = gateway.proc.output.text.split("\n").filter((line) => line !== "");
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const entry of entries) expect(entry).toHaveProperty("level");
    const access = entries.find((entry) => entry.request_id === requestId);
    expect(access).toMatchObject({
      level: "info",
      agent: "pi-admin",
      method: "GET",
      path: "/hello",
      status: 200,
    });
    expect(typeof access?.duration_ms).toBe("number");
    expect(typeof access?.bytes).toBe("number");
  });
});
