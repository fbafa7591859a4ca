// Requests held across a reconnect: a request for an agent that was connected moments ago, or for
// any allowed id while the gateway has just started, waits for the agent instead of failing.
import { afterEach, describe, expect, test } from "bun:test";
import { Agent, Gateway } from "./harness.ts";
import { startEchoService } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function gatewayFor(args: string[] = []): Promise<Gateway> {
  const gateway = await Gateway.start({ args });
  cleanups.push(() => gateway.stop());
  return gateway;
}

function echo() {
  const service = startEchoService();
  cleanups.push(() => service.stop(true));
  return service;
}

function agentFor(gateway: Gateway, port: number, id = "pi-hold"): Agent {
  const agent = new Agent(gateway, { id, to: port });
  cleanups.push(() => agent.stop());
  return agent;
}

/** Sends requests one after another until `stop` resolves; returns every status seen. */
async function steadyLoad(gateway: Gateway, agentId: string, stop: Promise<unknown>): Promise<number[]> {
  const statuses: number[] = [];
  let done = false;
  void stop.then(() => (done = true));
  let i = 0;
  while (!done) {
    const body = `request ${i++}`;
    const res = await gateway.fetch(agentId, "/echo", { method: "POST", body });
    const text = await res.text();
    statuses.push(res.status === 200 && JSON.parse(text).body === body ? 200 : res.status);
  }
  return statuses;
}

describe("held requests", () => {
  test("an agent restarted while requests arrive: every request gets 200", async () => {
    const service = echo();
    const gateway = await gatewayFor();
    const first = agentFor(gateway, service.port);
    await first.ready();
    const restarted = Promise.withResolvers<void>();
    const load = steadyLoad(gateway, "pi-hold", restarted.promise);
    await Bun.sleep(300);
    await first.stop();
    // The gap a user sees when the agent's service manager restarts it.
    await Bun.sleep(500);
    const second = agentFor(gateway, service.port);
    await second.ready();
    await Bun.sleep(300);
    restarted.resolve();
    const statuses = await load;
    expect(statuses.length).toBeGreaterThan(5);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  }, 20_000);

  test("a gateway just started holds a request for an allowed id until its agent connects", async () => {
    const service = echo();
    const gateway = await gatewayFor();
    const pending = gateway.fetch("pi-late", "/echo", { method: "POST", body: "waited" });
    await Bun.sleep(300);
    await agentFor(gateway, service.port, "pi-late").ready();
    const res = await pending;
    expect(res.status).toBe(200);
    expect(JSON.parse(await res.text()).body).toBe("waited");
  });

  test("an id never seen is refused at once once the start-up hold is over, an id no token allows always", async () => {
    const gateway = await gatewayFor(["--hold", "0.5"]);
    const notAllowed = await gateway.fetch("nobody", "/");
    expect(notAllowed.status).toBe(404);
    expect(notAllowed.headers.get("x-tunnel-error")).toBe("agent_not_connected");
    await Bun.sleep(600);
    const neverSeen = await gateway.fetch("pi-never", "/");
    expect(neverSeen.status).toBe(404);
    expect(neverSeen.headers.get("x-tunnel-error")).toBe("agent_not_connected");
  });

  test("an agent that does not come back: 502 once the hold is over", async () => {
    const service = echo();
    const gateway = await gatewayFor(["--hold", "1"]);
    const agent = agentFor(gateway, service.port);
    await agent.ready();
    await agent.stop();
    const res = await gateway.fetch("pi-hold", "/");
    expect(res.status).toBe(502);
    expect(res.headers.get("x-tunnel-error")).toBe("agent_gone");
  });

  test("a client that gives up while held costs nothing after it", async () => {
    const service = echo();
    const gateway = await gatewayFor(["--hold", "30", "--admin", "127.0.0.1:0"]);
    const [, port] = await gateway.proc.waitFor(/admin listening on http:\/\/[^\s]+:(\d+)/);
    const agent = agentFor(gateway, service.port);
    await agent.ready();
    await agent.stop();
    const held = gateway.fetch("pi-hold", "/", { signal: AbortSignal.timeout(300) });
    await expect(held).rejects.toThrow();
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain("indranet_requests_held 0");
  });
});
