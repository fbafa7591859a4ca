// Three gateways on one Redis behind HAProxy, as a user runs a cluster: HAProxy spreads both the
// requests and the agents' connections round robin, so most requests reach a gateway that does
// not hold their agent and are forwarded. Then Redis goes away and comes back, and a gateway is
// killed under load. Real redis-server and haproxy from Debian.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Haproxy, Redis } from "./cluster-services.ts";
import { Agent, adminUrl, DOMAIN, eventually, Gateway, scrape, sha256 } from "./harness.ts";
import { patternBytes, startEchoService, startWebSocketService } from "./services.ts";

const GATEWAYS = 3;
const AGENTS = 20;
const SECRET = { INDRANET_CLUSTER_SECRET: "cluster-secret-for-tests-only" };

interface Member {
  gateway: Gateway;
  admin: string;
}

let redis: Redis;
let members: Member[];
let haproxy: Haproxy;
let agents: Agent[];
const echo = startEchoService();
const websockets = startWebSocketService();

const ids = Array.from({ length: AGENTS }, (_, i) => `pi-${i}`);

async function startMember(): Promise<Member> {
  const gateway = await Gateway.start({
    args: ["--cluster-redis", redis.url, "--admin", "127.0.0.1:0"],
    env: SECRET,
  });
  return { gateway, admin: await adminUrl(gateway.proc) };
}

/** What the gateways logged, for a failure's message. */
function logs(): string {
  return members.map((m, i) => `--- gateway ${i}\n${m.gateway.proc.output.text.slice(-4000)}`).join("\n");
}

/** A request through HAProxy's ingress, as a client on the internet sends it. */
function viaBalancer(agentId: string, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("host", `${agentId}.${DOMAIN}`);
  return fetch(`http://127.0.0.1:${haproxy.ports[0]}${path}`, { ...init, headers });
}

/** Where each agent is connected, as one gateway's view of the cluster says. */
async function directory(member: Member): Promise<Record<string, string[]>> {
  const view = (await (await fetch(`${member.admin}/api/cluster`)).json()) as {
    agents: Record<string, string[]>;
  };
  return view.agents;
}

async function gatewayId(member: Member): Promise<string> {
  return ((await (await fetch(`${member.admin}/api/cluster`)).json()) as { gateway: string }).gateway;
}

/** The ids of the agents holding a session on this gateway. */
async function localAgents(member: Member): Promise<string[]> {
  const list = (await (await fetch(`${member.admin}/api/agents`)).json()) as { id: string }[];
  return [...new Set(list.map((entry) => entry.id))];
}

/** Null when the echo service answered for `agentId` with exactly this body and query, else why not. */
async function echoed(res: Response, agentId: string, body: string, query = ""): Promise<string | null> {
  const text = await res.text();
  if (res.status !== 200) return `${agentId}: ${res.status} ${text.slice(0, 200)}`;
  const got = JSON.parse(text) as { body: string; query: string; headers: [string, string][] };
  const host = got.headers.find(([name]) => name === "host")?.[1];
  if (got.body !== body || got.query !== query || !host?.startsWith(`${agentId}.${DOMAIN}`))
    return `${agentId}: wrong echo ${text.slice(0, 200)}`;
  return null;
}

beforeAll(async () => {
  redis = await Redis.start();
  members = await Promise.all(Array.from({ length: GATEWAYS }, startMember));
  haproxy = await Haproxy.start([
    { mode: "http", backends: members.map((m) => m.gateway.httpPort) },
    { mode: "tcp", backends: members.map((m) => m.gateway.wsPort) },
  ]);
  const agentGateway = `ws://127.0.0.1:${haproxy.ports[1]}`;
  agents = ids.map((id) => new Agent(agentGateway, { id, to: echo.port }));
  agents.push(new Agent(agentGateway, { id: "pi-ws", to: websockets.port }));
  await Promise.all(agents.map((agent) => agent.ready(30_000)));
  await eventually(async () => {
    expect(Object.keys(await directory(members[0] as Member)).length).toBe(AGENTS + 1);
  });
}, 60_000);

afterAll(async () => {
  await Promise.all((agents ?? []).map((agent) => agent.stop()));
  await Promise.all((members ?? []).map((member) => member.gateway.stop()));
  await haproxy?.stop();
  await redis?.stop();
  echo.stop(true);
  websockets.stop();
});

describe("a cluster of three gateways behind HAProxy", () => {
  test("300 requests spread over 20 agents: all 200 with exact bodies, most of them forwarded", async () => {
    const problems: string[] = [];
    const send = async (n: number) => {
      const agentId = ids[n % AGENTS] as string;
      const body = `request ${n} for ${agentId}`;
      const problem = await echoed(
        await viaBalancer(agentId, "/echo", { method: "POST", body }),
        agentId,
        body,
      );
      if (problem) problems.push(problem);
    };
    for (let batch = 0; batch < 300; batch += 30) {
      await Promise.all(Array.from({ length: 30 }, (_, i) => send(batch + i)));
    }
    expect(problems).toEqual([]);
    let forwarded = 0;
    for (const member of members) {
      forwarded +=
        (await scrape(member.admin)).get('indranet_forwarded_requests_total{direction="out"}') ?? 0;
    }
    // With three gateways, about two requests in three reach one that does not hold their agent.
    expect(forwarded).toBeGreaterThan(100);
  }, 60_000);

  test("an upload of 3 MiB streams through a forwarded path to each gateway", async () => {
    const body = patternBytes(3 * 1024 * 1024, 11);
    const [owner] = (await directory(members[0] as Member))["pi-3"] as string[];
    for (const member of members) {
      const res = await member.gateway.fetch("pi-3", "/upload", { method: "POST", body });
      if (res.status !== 200) {
        throw new Error(`${res.status} ${res.headers.get("x-tunnel-error")}: ${await res.text()}\n${logs()}`);
      }
      expect(await res.json()).toEqual({ length: body.byteLength, sha256: await sha256(body) });
    }
    // Two of the three gateways forwarded it; the one holding pi-3 served all three itself.
    await eventually(async () => {
      const logs = members.map((m) => m.gateway.proc.output.text);
      expect(logs.filter((text) => /pi-3 POST \/upload 200 .* to=/.test(text)).length).toBe(2);
      expect(logs.filter((text) => /pi-3 POST \/upload 200 .* via=/.test(text)).length).toBe(1);
    });
    expect(owner).toBeDefined();
  }, 30_000);

  test("a forwarded answer arrives as the service sent it: compressed bytes, repeated headers, redirects", async () => {
    const owner = ((await directory(members[0] as Member))["pi-5"] as string[])[0];
    const ids = await Promise.all(members.map(gatewayId));
    const other = members[ids.findIndex((id) => id !== owner)] as Member;
    const gzip = await other.gateway.fetch("pi-5", "/gzip/50000", { decompress: false } as RequestInit);
    expect(gzip.headers.get("content-encoding")).toBe("gzip");
    expect(new Uint8Array(await gzip.arrayBuffer())).toEqual(
      Bun.gzipSync(patternBytes(50_000) as Uint8Array<ArrayBuffer>),
    );
    const cookies = await other.gateway.fetch("pi-5", "/cookies");
    expect(cookies.headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2; Path=/"]);
    const status = await other.gateway.fetch("pi-5", "/status/307");
    expect(status.status).toBe(307);
    const head = await other.gateway.fetch("pi-5", "/status/204", { method: "HEAD" });
    expect(head.status).toBe(204);
    // The hop adds no header the client did not send (curl sends none of these here).
    // The echo service runs in this process: curl must not block it.
    const bare = Bun.spawn(
      [
        "curl",
        "-sS",
        "-H",
        "User-Agent:",
        "-H",
        "Accept:",
        "-H",
        `Host: pi-5.${DOMAIN}`,
        `http://127.0.0.1:${other.gateway.httpPort}/echo`,
      ],
      { stdout: "pipe" },
    );
    const names = (
      JSON.parse(await new Response(bare.stdout).text()) as { headers: [string, string][] }
    ).headers.map(([n]) => n);
    expect(names).not.toContain("user-agent");
    expect(names).not.toContain("accept");
    expect(names).not.toContain("x-indranet-hop");
  });

  test("a service's own X-Tunnel-Error header reaches the client and never makes a gateway send the request again", async () => {
    const owner = ((await directory(members[0] as Member))["pi-6"] as string[])[0];
    const gatewayIds = await Promise.all(members.map(gatewayId));
    const other = members[gatewayIds.findIndex((id) => id !== owner)] as Member;
    const before = echo.lookalikesSeen;
    const res = await other.gateway.fetch("pi-6", "/lookalike", { method: "POST", body: "once" });
    expect(res.status).toBe(404);
    expect(await res.text()).toBe("from the service");
    expect(echo.lookalikesSeen).toBe(before + 1);
  });

  test("a WebSocket through every gateway, forwarded or not, echoes text and binary both ways", async () => {
    for (const member of members) {
      const ws = new WebSocket(`ws://127.0.0.1:${member.gateway.httpPort}/chat`, {
        headers: { host: `pi-ws.${DOMAIN}` },
        protocols: ["chat.v2"],
      } as Bun.WebSocketOptions);
      ws.binaryType = "arraybuffer";
      const messages: (string | ArrayBuffer)[] = [];
      const twoMessages = Promise.withResolvers<void>();
      ws.onmessage = (event) => {
        messages.push(event.data as string | ArrayBuffer);
        if (messages.length === 2) twoMessages.resolve();
      };
      ws.onerror = () => twoMessages.reject(new Error("WebSocket error"));
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onclose = reject;
      });
      expect(ws.protocol).toBe("chat.v2");
      ws.send("hello through the cluster");
      ws.send(patternBytes(100_000, 5));
      await twoMessages.promise;
      expect(messages[0]).toBe("hello through the cluster");
      expect(await sha256(messages[1] as ArrayBuffer)).toBe(await sha256(patternBytes(100_000, 5)));
      ws.close(1000, "done");
    }
  }, 30_000);

  test("Redis away for 10 s: local agents keep serving, forwarding says cluster_unavailable, then resumes", async () => {
    const member = members[0] as Member;
    const local = (await localAgents(member)).filter((id) => ids.includes(id));
    const remote = ids.find((id) => !local.includes(id)) as string;
    expect(local.length).toBeGreaterThan(0);
    await redis.stop();
    const outage = Date.now();
    const localProblems: string[] = [];
    let refused: Response | undefined;
    while (Date.now() - outage < 10_000) {
      for (const agentId of local) {
        const problem = await echoed(
          await member.gateway.fetch(agentId, "/echo", { method: "POST", body: "x" }),
          agentId,
          "x",
        );
        if (problem) localProblems.push(problem);
      }
      const res = await member.gateway.fetch(remote, "/status/200");
      await res.arrayBuffer();
      if (res.status === 502) refused = res;
      await Bun.sleep(200);
    }
    expect(localProblems).toEqual([]);
    expect(refused?.headers.get("x-tunnel-error")).toBe("cluster_unavailable");

    await redis.resume();
    // Every gateway registers what it holds again at its next refresh.
    await eventually(async () => {
      const res = await member.gateway.fetch(remote, "/status/200");
      expect(res.status).toBe(200);
    }, 5_000);
    await eventually(async () => {
      expect(Object.keys(await directory(member)).length).toBe(AGENTS + 1);
    }, 5_000);
  }, 40_000);

  test("kill -9 of one gateway under load: only requests in flight on it fail, cleanly; agents are back within 5 s", async () => {
    const victim = members[2] as Member;
    const survivors = members.slice(0, 2);
    const victimId = await gatewayId(victim);
    const stranded = Object.entries(await directory(members[0] as Member))
      .filter(([id, holders]) => ids.includes(id) && holders.length === 1 && holders[0] === victimId)
      .map(([id]) => id);
    expect(stranded.length).toBeGreaterThan(0);

    let killedAt = Number.POSITIVE_INFINITY;
    let stop = false;
    const failures: { startedAt: number; what: string }[] = [];
    let ok = 0;
    const client = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const agentId = ids[(n * 7 + i) % AGENTS] as string;
        const query = `?client=${n}&request=${i}`;
        const startedAt = performance.now();
        try {
          const problem = await echoed(await viaBalancer(agentId, `/echo${query}`), agentId, "", query);
          if (problem) failures.push({ startedAt, what: problem });
          else ok++;
        } catch (error) {
          failures.push({ startedAt, what: `${agentId}: ${error}` });
        }
      }
    };
    const load = Promise.all(Array.from({ length: 6 }, (_, n) => client(n)));
    await Bun.sleep(1_000);
    killedAt = performance.now();
    victim.gateway.proc.child.kill("SIGKILL");
    await eventually(async () => {
      const where = await directory(survivors[0] as Member);
      const survivorIds = await Promise.all(survivors.map(gatewayId));
      for (const id of [...ids, "pi-ws"]) {
        expect(where[id]?.some((holder) => survivorIds.includes(holder))).toBe(true);
      }
    }, 5_000);
    await Bun.sleep(1_000);
    stop = true;
    await load;

    expect(ok).toBeGreaterThan(50);
    // A request may fail only if it was already under way when the gateway died, and then with
    // HAProxy's 502, never a hang or a broken connection.
    expect(failures.filter((f) => f.startedAt >= killedAt)).toEqual([]);
    for (const failure of failures) expect(failure.what).toMatch(/: 502 /);
    for (const agentId of stranded) {
      expect(
        await echoed(await viaBalancer(agentId, "/echo", { method: "POST", body: "back" }), agentId, "back"),
      ).toBeNull();
    }
  }, 40_000);
});
