// What a client sees when the tunnel cannot deliver: a clear status and a short text naming the
// cause, and the agent back in service once the cause is gone.
import { afterEach, describe, expect, test } from "bun:test";
import { Agent, eventually, Gateway } from "./harness.ts";
import { closedPort, startEchoService, startTcpProxy } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// A short hold: requests for an agent that just left wait this long for it before failing.
async function gatewayFor(options: Parameters<typeof Gateway.start>[0] = {}): Promise<Gateway> {
  const gateway = await Gateway.start({ ...options, args: ["--hold", "0.5", ...(options.args ?? [])] });
  cleanups.push(() => gateway.stop());
  return gateway;
}

async function agentFor(gateway: Gateway, to: number | string, id = "pi-fail"): Promise<Agent> {
  const agent = await Agent.start(gateway, { id, to });
  cleanups.push(() => agent.stop());
  return agent;
}

describe("answers when the tunnel cannot deliver", () => {
  test("404 with a short text for a host that is not a tunnel", async () => {
    const gateway = await gatewayFor();
    const res = await fetch(`http://127.0.0.1:${gateway.httpPort}/`, { headers: { host: "example.org" } });
    expect(res.status).toBe(404);
    expect(res.headers.get("x-tunnel-error")).toBe("unknown_host");
    expect(await res.text()).toContain("no tunnel is configured for this host");
  });

  test("404 naming the agent when no agent with that id is connected", async () => {
    const gateway = await gatewayFor();
    // Just started, the gateway holds requests for ids its tokens allow: their agents may be
    // reconnecting to it. Once the hold is over, an id it never saw is refused at once.
    await Bun.sleep(500);
    const res = await gateway.fetch("pi-absent", "/");
    expect(res.status).toBe(404);
    expect(await res.text()).toContain("pi-absent");
  });

  test("504 when the local service never answers", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const gateway = await gatewayFor({ args: ["--request-timeout", "1"] });
    await agentFor(gateway, service.port);
    const res = await gateway.fetch("pi-fail", "/hang");
    expect(res.status).toBe(504);
    expect(res.headers.get("x-tunnel-error")).toBe("timeout");
    // The tunnel still serves the next request.
    expect((await gateway.fetch("pi-fail", "/status/201")).status).toBe(201);
  });

  test("502 when nothing listens on the local port", async () => {
    const gateway = await gatewayFor();
    await agentFor(gateway, await closedPort());
    const res = await gateway.fetch("pi-fail", "/");
    expect(res.status).toBe(502);
    expect(res.headers.get("x-tunnel-error")).toBe("local_unreachable");
    expect(await res.text()).toContain("could not reach its local service");
  });

  test("502 when the agent is killed mid-response", async () => {
    // A service that sends headers and part of the body, then stalls: the agent dies meanwhile.
    const service = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch: () =>
        new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(new TextEncoder().encode("partial"));
            },
          }),
        ),
    });
    cleanups.push(() => service.stop(true));
    const gateway = await gatewayFor();
    const agent = await agentFor(gateway, service.port as number);
    const res = await gateway.fetch("pi-fail", "/");
    expect(res.status).toBe(200);
    const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("partial");
    agent.proc.child.kill("SIGKILL");
    await expect(reader.read()).rejects.toThrow();
    // The next request waits the hold for the agent to come back, then gives up.
    const after = await eventually(async () => {
      const r = await gateway.fetch("pi-fail", "/");
      if (r.status !== 502) throw new Error(`still routed: ${r.status}`);
      return r;
    });
    expect(after.headers.get("x-tunnel-error")).toBe("agent_gone");
  });

  test("502 before the head when the agent disconnects while the request waits", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const gateway = await gatewayFor();
    const agent = await agentFor(gateway, service.port as number);
    const before = service.hangsSeen;
    const pending = gateway.fetch("pi-fail", "/hang");
    await eventually(async () => expect(service.hangsSeen).toBe(before + 1));
    agent.proc.child.kill("SIGKILL");
    const res = await pending;
    expect(res.status).toBe(502);
    expect(res.headers.get("x-tunnel-error")).toBe("agent_disconnected");
  });

  test("the agent serves again after the gateway restarts", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const first = await Gateway.start();
    const agent = await agentFor(first, service.port);
    expect((await first.fetch("pi-fail", "/status/201")).status).toBe(201);
    const { httpPort, wsPort } = first;
    await first.stop();
    await agent.proc.waitFor(/reconnecting in/);

    const second = await gatewayFor({ httpPort, wsPort });
    const res = await eventually(async () => {
      const r = await second.fetch("pi-fail", "/status/201");
      if (r.status !== 201) throw new Error(`not yet: ${r.status}`);
      return r;
    }, 20_000);
    expect(res.status).toBe(201);
  });

  test("a network that drops silently is noticed by heartbeat, and the agent serves again", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const gateway = await gatewayFor({ args: ["--heartbeat", "0.5"] });
    const proxy = startTcpProxy(gateway.wsPort);
    cleanups.push(() => proxy.stop());
    const agent = new Agent(`ws://127.0.0.1:${proxy.port}`, { id: "pi-fail", to: service.port });
    cleanups.push(() => agent.stop());
    await agent.ready();
    expect((await gateway.fetch("pi-fail", "/status/201")).status).toBe(201);

    proxy.blackhole();
    // The agent hears nothing for three heartbeats and dials again through the relay, while the
    // gateway still holds the old session: the new one must take over, not queue behind it.
    await agent.proc.waitFor(/gateway silent/, 10_000);
    const res = await eventually(async () => {
      const r = await gateway.fetch("pi-fail", "/status/201");
      if (r.status !== 201) throw new Error(`not yet: ${r.status}`);
      return r;
    }, 20_000);
    expect(res.status).toBe(201);
  }, 40_000);

  test("an agent that goes silent is dropped by the gateway and its streams end with 502", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const gateway = await gatewayFor({ args: ["--heartbeat", "0.5", "--request-timeout", "60"] });
    const agent = await agentFor(gateway, service.port);
    const before = service.hangsSeen;
    const pending = gateway.fetch("pi-fail", "/hang");
    await eventually(async () => expect(service.hangsSeen).toBe(before + 1));
    // A stopped process keeps its socket open and says nothing, like a device that lost power
    // behind a NAT that never sends a reset.
    agent.proc.child.kill("SIGSTOP");
    cleanups.push(() => void agent.proc.child.kill("SIGCONT"));
    const res = await pending;
    expect(res.status).toBe(502);
    expect(res.headers.get("x-tunnel-error")).toBe("agent_disconnected");
    expect((await gateway.fetch("pi-fail", "/")).status).toBe(502);
  });
});
