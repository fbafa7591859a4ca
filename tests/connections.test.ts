// An agent holding several connections at once (`--connections`): to one gateway, or one per
// gateway, each replaced on its own when it is lost.
import { afterEach, describe, expect, test } from "bun:test";
import {
  Agent,
  adminUrl,
  DEFAULT_TOKEN,
  eventually,
  Gateway,
  type GatewayOptions,
  scrape,
} from "./harness.ts";
import { patternBytes, startEchoService } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ID = "pi-many";

function echoService() {
  const service = startEchoService();
  cleanups.push(() => service.stop(true));
  return service;
}

async function gatewayWithAdmin(options: GatewayOptions = {}) {
  const gateway = await Gateway.start({ ...options, args: ["--admin", "127.0.0.1:0"] });
  cleanups.push(() => gateway.stop());
  return { gateway, admin: await adminUrl(gateway.proc) };
}

interface AgentEntry {
  id: string;
  session: string;
  bytes_in: number;
}

async function sessionsOf(admin: string): Promise<AgentEntry[]> {
  const list = (await (await fetch(`${admin}/api/agents`)).json()) as AgentEntry[];
  return list.filter((entry) => entry.id === ID);
}

/** One request for `size` pattern bytes through `gateway`; the body must be exactly those bytes. */
async function fetchBytes(gateway: Gateway, size: number): Promise<number> {
  const res = await gateway.fetch(ID, `/bytes/${size}`);
  const body = new Uint8Array(await res.arrayBuffer());
  if (res.status === 200) expect(body).toEqual(new Uint8Array(patternBytes(size)));
  return res.status;
}

describe("agent with several connections", () => {
  test("three connections to one gateway are three sessions, and requests spread over them", async () => {
    const service = echoService();
    const { gateway, admin } = await gatewayWithAdmin();
    const agent = await Agent.start(gateway, { id: ID, to: service.port, args: ["--connections", "3"] });
    cleanups.push(() => agent.stop());
    await eventually(async () => expect(await sessionsOf(admin)).toHaveLength(3));
    const before = await sessionsOf(admin);

    // Round robin gives each session about a third of the responses, at least 1000 bytes each. A
    // session the gateway still probes (a newer one just claimed the id) is skipped meanwhile,
    // so on a busy machine the first batch may miss one: batches go on until all have served.
    await eventually(async () => {
      const statuses = await Promise.all(Array.from({ length: 60 }, (_, i) => fetchBytes(gateway, 1000 + i)));
      expect(statuses).toEqual(Array(60).fill(200));
      const after = await sessionsOf(admin);
      expect(after.map((s) => s.session).sort()).toEqual(before.map((s) => s.session).sort());
      for (const session of after) {
        const grown = session.bytes_in - (before.find((s) => s.session === session.session)?.bytes_in ?? 0);
        expect(grown).toBeGreaterThan(10 * 1000);
      }
    });

    agent.proc.child.kill("SIGTERM");
    expect(await agent.proc.exited()).toBe(0);
  }, 30_000);

  test("one connection per gateway: losing one leaves the other serving, and it comes back on its own", async () => {
    const service = echoService();
    const a = await gatewayWithAdmin();
    let b = await gatewayWithAdmin();
    const agent = new Agent(a.gateway, {
      id: ID,
      to: service.port,
      args: ["--gateway", b.gateway.wsUrl, "--connections", "2", "--admin", "127.0.0.1:0"],
    });
    cleanups.push(() => agent.stop());
    const agentAdmin = await adminUrl(agent.proc);
    await eventually(async () => {
      expect(await sessionsOf(a.admin)).toHaveLength(1);
      expect(await sessionsOf(b.admin)).toHaveLength(1);
    });
    const [sessionOnA] = await sessionsOf(a.admin);

    let loading = true;
    const statuses: number[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (loading) statuses.push(await fetchBytes(a.gateway, 2000));
      }),
    );

    const { httpPort, wsPort } = b.gateway;
    b.gateway.proc.child.kill("SIGKILL");
    await b.gateway.proc.child.exited;
    await agent.proc.waitFor(new RegExp(`connection 2/2: connection to ${b.gateway.wsUrl} lost`));
    const whileDown = await scrape(agentAdmin);
    expect(whileDown.get("indranet_gateway_connections")).toBe(1);
    expect((await fetch(`${agentAdmin}/healthz`)).status).toBe(200);

    // The listening ports may linger for a moment after the kill.
    b = await eventually(() => gatewayWithAdmin({ httpPort, wsPort }), 15_000);
    await eventually(async () => expect(await sessionsOf(b.admin)).toHaveLength(1), 15_000);
    expect((await scrape(agentAdmin)).get("indranet_gateway_connections")).toBe(2);
    expect(await fetchBytes(b.gateway, 3000)).toBe(200);

    loading = false;
    await load;
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(await sessionsOf(a.admin)).toEqual([expect.objectContaining({ session: sessionOnA?.session })]);
  }, 60_000);

  test("a refused credential ends every connection with exit 1", async () => {
    const { gateway } = await gatewayWithAdmin();
    const agent = new Agent(gateway, {
      id: ID,
      to: 1,
      token: { ...DEFAULT_TOKEN, secret: "not-the-right-secret-at-all" },
      args: ["--connections", "3"],
    });
    cleanups.push(() => agent.stop());
    expect(await agent.proc.exited()).toBe(1);
    expect(agent.proc.output.text).toContain("gateway refused this agent (BAD_SIGNATURE)");
  });

  test("a bad --connections exits 2 naming the flag", async () => {
    const agent = new Agent("ws://127.0.0.1:1", { id: ID, to: 1, args: ["--connections", "17"] });
    cleanups.push(() => agent.stop());
    expect(await agent.proc.exited()).toBe(2);
    expect(agent.proc.output.text).toContain("--connections: expected a whole number from 1 to 16, got '17'");
  });
});
