// The tunnel under faults and hostile load, with the real processes: processes killed with
// SIGKILL while clients keep sending, agents that connect and drop by the hundred, sockets that
// never authenticate, and a slow WAN link in the middle. What matters is that every client gets a
// clean answer, nothing hangs and nothing leaks, not how fast it goes.
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { forEachFrame } from "../shared/batch.ts";
import { decodeEnvelope } from "../shared/protocol.ts";
import { type DelayRelay, startDelayRelay } from "./delay-relay.ts";
import { Agent, adminUrl, DOMAIN, eventually, Gateway, Proc, scrape, sha256 } from "./harness.ts";
import { connectFrame, openSocket } from "./rogue.ts";
import { closedPort, patternBytes, startEchoService, startWebSocketService } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MiB = 1024 * 1024;
const REQUEST_TIMEOUT_S = 3;
/** A little above the gateway's own head timeout: a fetch still open then is a hang. */
const CLIENT_TIMEOUT_MS = REQUEST_TIMEOUT_S * 1000 + 2_000;
const KILLS = 5;
const CHURN_MS = 60_000;
const CHURN_AGENTS = 200;
const SILENT_SOCKETS = 2_000;

function rssBytes(pid: number): number {
  const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!line) throw new Error(`no VmRSS for ${pid}`);
  return Number(line[1]) * 1024;
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

async function startGateway(httpPort = 0, wsPort = 0): Promise<{ gateway: Gateway; admin: string }> {
  const gateway = await Gateway.start({
    httpPort,
    wsPort,
    args: ["--admin", "127.0.0.1:0", "--request-timeout", String(REQUEST_TIMEOUT_S)],
  });
  return { gateway, admin: await adminUrl(gateway.proc) };
}

async function echoBehindGateway(): Promise<{
  service: ReturnType<typeof startEchoService>;
  gateway: Gateway;
}> {
  const service = startEchoService();
  cleanups.push(() => service.stop(true));
  const { gateway } = await startGateway();
  cleanups.push(() => gateway.stop());
  return { service, gateway };
}

async function streamsOpen(admin: string): Promise<number> {
  return (await scrape(admin)).get("indranet_streams_open") ?? Number.NaN;
}

/**
 * A local service in its own process, so it can be killed with SIGKILL and started again on the
 * same port: `/bytes/N` answers N pattern bytes.
 */
function startServiceProcess(port: number): Proc {
  const services = join(import.meta.dir, "services.ts");
  const code = `
    import { patternBytes } from ${JSON.stringify(services)};
    Bun.serve({
      hostname: "127.0.0.1",
      port: ${port},
      idleTimeout: 0,
      fetch(req) {
        const [, route, arg] = new URL(req.url).pathname.split("/");
        if (route === "bytes") return new Response(patternBytes(Number(arg)));
        return new Response("not found", { status: 404 });
      },
    });
    console.log("service listening");
  `;
  return new Proc([process.execPath, "-e", code], {});
}

async function serviceOn(port: number): Promise<Proc> {
  // The port may still be held for a moment by the process just killed.
  return eventually(async () => {
    const proc = startServiceProcess(port);
    try {
      await proc.waitFor(/service listening/, 5_000);
      return proc;
    } catch (error) {
      await proc.stop("SIGKILL");
      throw error;
    }
  }, 15_000);
}

/** What clients saw while faults were injected; every outcome falls in exactly one bucket. */
interface Tally {
  ok: number;
  /** Answers the gateway gave itself, by status and `x-tunnel-error`. */
  tunnelErrors: Record<string, number>;
  /** Fetch failures while the gateway process was down, by error code. */
  gatewayDown: Record<string, number>;
  /** Answered 200, then the body broke off: the documented outcome of a session lost mid-body. */
  brokenBodies: number;
  hangs: number;
  /** Anything else: a wrong body, a status without `x-tunnel-error`, an error while the gateway was up. */
  unexpected: string[];
}

function newTally(): Tally {
  return { ok: 0, tunnelErrors: {}, gatewayDown: {}, brokenBodies: 0, hangs: 0, unexpected: [] };
}

const bump = (record: Record<string, number>, key: string) => {
  record[key] = (record[key] ?? 0) + 1;
};

/**
 * `clients` loops fetching a small body through the tunnel until `stop()`. `gatewayDown()` tells
 * whether a failed fetch happened while the gateway was killed on purpose.
 */
function startLoad(
  target: () => Gateway,
  agentId: string,
  clients: number,
  tally: Tally,
  gatewayDown: () => boolean = () => false,
): { stop(): Promise<void> } {
  const size = 4096;
  const expected = Buffer.from(patternBytes(size));
  let running = true;
  /** Whether the answer was the service's own; fast error answers are not retried in a spin. */
  const one = async (): Promise<boolean> => {
    const downAtStart = gatewayDown();
    let res: Response;
    try {
      res = await target().fetch(agentId, `/bytes/${size}`, {
        signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
      });
    } catch (error) {
      const name = (error as Error).name;
      if (name === "TimeoutError") tally.hangs++;
      else if (downAtStart || gatewayDown())
        bump(tally.gatewayDown, (error as { code?: string }).code ?? name);
      else tally.unexpected.push(`fetch failed: ${(error as Error).message}`);
      return false;
    }
    let body: Buffer;
    try {
      body = Buffer.from(await res.arrayBuffer());
    } catch (error) {
      if ((error as Error).name === "TimeoutError") tally.hangs++;
      else tally.brokenBodies++;
      return false;
    }
    const tunnelError = res.headers.get("x-tunnel-error");
    if (res.status === 200 && tunnelError === null) {
      if (body.equals(expected)) {
        tally.ok++;
        return true;
      }
      tally.unexpected.push(`200 with a wrong body of ${body.byteLength} bytes`);
    } else if ([502, 503, 504].includes(res.status) && tunnelError !== null) {
      bump(tally.tunnelErrors, `${res.status} ${tunnelError}`);
    } else if (res.status === 404 && tunnelError === "agent_not_connected") {
      // Between an agent's death and its return the gateway knows no agent by that id.
      bump(tally.tunnelErrors, `${res.status} ${tunnelError}`);
    } else {
      tally.unexpected.push(`${res.status} ${tunnelError ?? "(no x-tunnel-error)"}`);
    }
    return false;
  };
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      // Refusals and the gateway's own answers come back at once; do not spin on them.
      if (!(await one())) await Bun.sleep(20);
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

function report(label: string, tally: Tally, extra: Record<string, unknown> = {}): void {
  console.log(
    `${label}: ${JSON.stringify({
      ok200: tally.ok,
      tunnelErrors: tally.tunnelErrors,
      gatewayDownFetchErrors: tally.gatewayDown,
      brokenBodies: tally.brokenBodies,
      hangs: tally.hangs,
      unexpected: tally.unexpected.slice(0, 10),
      unexpectedCount: tally.unexpected.length,
      ...extra,
    })}`,
  );
}

describe("kill -9 during continuous traffic", () => {
  test(`agent and local service each killed ${KILLS} times: clean answers, no hangs, no leak`, async () => {
    const servicePort = await closedPort();
    let service = await serviceOn(servicePort);
    cleanups.push(() => service.stop("SIGKILL"));
    const { gateway, admin } = await startGateway();
    cleanups.push(() => gateway.stop());
    const relay = startDelayRelay({
      targetPort: gateway.wsPort,
      oneWayDelayMs: 5,
      bytesPerSecond: 100 * MiB,
      queueBytes: 1 * MiB,
    });
    cleanups.push(() => relay.stop());
    const startAgent = async () => {
      const agent = new Agent(`ws://127.0.0.1:${relay.port}`, { id: "pi-kill", to: servicePort });
      await agent.ready();
      return agent;
    };
    let agent = await startAgent();
    cleanups.push(() => agent.stop());

    const warmup = newTally();
    const warm = startLoad(() => gateway, "pi-kill", 4, warmup);
    await Bun.sleep(3_000);
    await warm.stop();
    expect(warmup.ok).toBeGreaterThan(0);
    const rssBefore = rssBytes(gateway.proc.pid);

    const tally = newTally();
    const load = startLoad(() => gateway, "pi-kill", 4, tally);
    for (let i = 0; i < KILLS; i++) {
      await Bun.sleep(700);
      agent.proc.child.kill("SIGKILL");
      await agent.proc.child.exited;
      agent = await startAgent();
    }
    const afterAgentKills = { ...tally, tunnelErrors: { ...tally.tunnelErrors } };
    for (let i = 0; i < KILLS; i++) {
      await Bun.sleep(700);
      service.child.kill("SIGKILL");
      await service.child.exited;
      await Bun.sleep(300);
      service = await serviceOn(servicePort);
    }
    await Bun.sleep(1_000);
    await load.stop();

    await eventually(async () => expect(await streamsOpen(admin)).toBe(0));
    // Memory the faults left behind, if any, shows once the garbage has had a chance to go.
    let rssAfter = rssBytes(gateway.proc.pid);
    try {
      await eventually(async () => {
        rssAfter = rssBytes(gateway.proc.pid);
        expect(rssAfter - rssBefore).toBeLessThan(10 * MiB);
      }, 15_000);
    } catch {}
    report("agent+service kills", tally, {
      okDuringAgentKills: afterAgentKills.ok,
      tunnelErrorsDuringAgentKills: afterAgentKills.tunnelErrors,
      gatewayRssAfterWarmup: mib(rssBefore),
      gatewayRssAfter: mib(rssAfter),
    });
    expect(tally.hangs).toBe(0);
    expect(tally.unexpected).toEqual([]);
    expect(tally.ok).toBeGreaterThan(0);
    expect(rssAfter - rssBefore).toBeLessThan(10 * MiB);
    // And the tunnel serves as before.
    expect((await gateway.fetch("pi-kill", "/bytes/10")).status).toBe(200);
  }, 120_000);

  test(`gateway killed and restarted on its ports ${KILLS} times: clean answers, no hangs`, async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    let { gateway, admin } = await startGateway();
    const { httpPort, wsPort } = gateway;
    cleanups.push(() => gateway.stop());
    const relay = startDelayRelay({
      targetPort: wsPort,
      oneWayDelayMs: 5,
      bytesPerSecond: 100 * MiB,
      queueBytes: MiB,
    });
    cleanups.push(() => relay.stop());
    const agent = new Agent(`ws://127.0.0.1:${relay.port}`, { id: "pi-gwkill", to: service.port });
    cleanups.push(() => agent.stop());
    await agent.ready();

    let down = false;
    const tally = newTally();
    const load = startLoad(
      () => gateway,
      "pi-gwkill",
      4,
      tally,
      () => down,
    );
    const started: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      await Bun.sleep(1_000);
      down = true;
      gateway.proc.child.kill("SIGKILL");
      await gateway.proc.child.exited;
      const t0 = performance.now();
      // The listening ports may linger for a moment after the kill.
      ({ gateway, admin } = await eventually(() => startGateway(httpPort, wsPort), 15_000));
      down = false;
      started.push(Math.round(performance.now() - t0));
      // The agent dials again with backoff; traffic meanwhile is answered 404 agent_not_connected.
      await eventually(
        async () => expect((await gateway.fetch("pi-gwkill", "/status/200")).status).toBe(200),
        40_000,
      );
    }
    await Bun.sleep(1_000);
    await load.stop();
    await eventually(async () => expect(await streamsOpen(admin)).toBe(0));
    report("gateway kills", tally, { restartMs: started });
    expect(tally.hangs).toBe(0);
    expect(tally.unexpected).toEqual([]);
    expect(tally.ok).toBeGreaterThan(0);
  }, 240_000);
});

describe("agents by the hundred", () => {
  test(
    `${CHURN_AGENTS} agents connecting and dropping for ${CHURN_MS / 1000} s: flat memory, real agent served`,
    async () => {
      const { service, gateway } = await echoBehindGateway();

      let running = true;
      let sessions = 0;
      let failures = 0;
      const churn = async (n: number) => {
        while (running) {
          let ws: WebSocket | null = null;
          try {
            ws = await openSocket(gateway.wsUrl);
            const socket = ws;
            const connected = new Promise<void>((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error("no Connected")), 10_000);
              socket.onmessage = (event) => {
                clearTimeout(timer);
                forEachFrame(new Uint8Array(event.data as ArrayBuffer), (frame) => {
                  const message = decodeEnvelope(frame);
                  if (message.case === "control" && message.value.kind.case === "connected") resolve();
                  else if (message.case !== "control") reject(new Error(`refused: ${message.case}`));
                });
              };
              socket.onclose = () => {
                clearTimeout(timer);
                reject(new Error("closed before Connected"));
              };
            });
            socket.send(connectFrame(`pi-churn-${n}`));
            await connected;
            sessions++;
            await Bun.sleep(Math.random() * 300);
          } catch {
            failures++;
            await Bun.sleep(200);
          } finally {
            if (ws !== null) {
              ws.onclose = null;
              // Half leave politely, half vanish without a close frame.
              const terminate = (ws as unknown as { terminate?: () => void }).terminate;
              if (Math.random() < 0.5 && terminate) terminate.call(ws);
              else ws.close();
            }
          }
        }
      };
      const t0 = performance.now();
      const loops = Array.from({ length: CHURN_AGENTS }, (_, n) => churn(n));
      const samples: { s: number; rss: string }[] = [];
      const rssAt: Record<number, number> = {};
      for (let s = 5; s <= CHURN_MS / 1000; s += 5) {
        await Bun.sleep(Math.max(0, t0 + s * 1000 - performance.now()));
        const rss = rssBytes(gateway.proc.pid);
        rssAt[s] = rss;
        samples.push({ s, rss: mib(rss) });
      }
      running = false;
      await Promise.all(loops);
      console.log(`agent churn: ${JSON.stringify({ sessions, failures, rssSamples: samples })}`);

      const agent = await Agent.start(gateway, { id: "pi-after-churn", to: service.port });
      cleanups.push(() => agent.stop());
      const res = await gateway.fetch("pi-after-churn", "/status/201");
      expect(res.status).toBe(201);
      expect(sessions).toBeGreaterThan(CHURN_AGENTS);
      // Lowest against lowest: a sample taken just before a collection is a peak of garbage, not
      // a leak, and a leak raises the floor.
      const floor = (from: number, to: number) =>
        Math.min(
          ...Object.entries(rssAt).flatMap(([s, rss]) => (Number(s) >= from && Number(s) <= to ? [rss] : [])),
        );
      const growth = floor(CHURN_MS / 1000 - 10, CHURN_MS / 1000) - floor(15, 25);
      expect(growth).toBeLessThan(32 * MiB);
    },
    CHURN_MS + 60_000,
  );
});

describe("sockets that never authenticate", () => {
  test(`${SILENT_SOCKETS} silent sockets on the agent port do not keep a real agent out`, async () => {
    const { service, gateway } = await echoBehindGateway();

    let holding = true;
    let opened = 0;
    /** Closed by the gateway, by what the socket sent: an upgrade request, or nothing at all. */
    const closedByGateway = { upgraded: 0, silent: 0 };
    let refused = 0;
    const live = new Set<Bun.Socket<undefined>>();
    const upgrade =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    // Each slot holds one silent socket and opens a new one when the gateway closes it, so the
    // pressure lasts as long as the test, not just the gateway's authentication timeout.
    const hold = async (n: number) => {
      while (holding) {
        const closed = Promise.withResolvers<void>();
        try {
          const socket = await Bun.connect({
            hostname: "127.0.0.1",
            port: gateway.wsPort,
            socket: { data() {}, close: () => closed.resolve(), error: () => closed.resolve() },
          });
          opened++;
          live.add(socket);
          if (n % 2 === 0) socket.write(upgrade);
          await closed.promise;
          live.delete(socket);
          if (holding) closedByGateway[n % 2 === 0 ? "upgraded" : "silent"]++;
        } catch {
          refused++;
          await Bun.sleep(100);
        }
      }
    };
    const slots = Array.from({ length: SILENT_SOCKETS }, (_, n) => hold(n));
    cleanups.push(async () => {
      holding = false;
      for (const socket of live) socket.terminate();
      await Promise.all(slots);
    });
    await eventually(async () => expect(opened).toBeGreaterThanOrEqual(SILENT_SOCKETS), 30_000);

    const agent = new Agent(gateway, { id: "pi-past-silent", to: service.port });
    cleanups.push(() => agent.stop());
    await agent.ready(30_000);
    const heldAtAgentReady = live.size;
    const served = async () => {
      const res = await gateway.fetch("pi-past-silent", "/bytes/65536");
      expect(res.status).toBe(200);
      expect(await sha256(await res.arrayBuffer())).toBe(await sha256(patternBytes(65536)));
    };
    await served();
    // Past the gateway's authentication timeout the slots are refilled, and the agent stays served.
    await Bun.sleep(7_000);
    await served();
    console.log(`silent sockets: ${JSON.stringify({ opened, heldAtAgentReady, closedByGateway, refused })}`);
  }, 90_000);
});

describe("over a slow link (80 ms round trip, 20 Mbit/s)", () => {
  const link = { oneWayDelayMs: 40, bytesPerSecond: (20_000_000 / 8) | 0, queueBytes: 256 * 1024 };
  const SIZE = 8 * MiB;
  const throughput = (bytes: number, ms: number) => `${((bytes * 8) / (ms / 1000) / 1e6).toFixed(1)} Mbit/s`;

  async function overRelay(service: number, id: string): Promise<{ gateway: Gateway; relay: DelayRelay }> {
    const { gateway } = await startGateway();
    cleanups.push(() => gateway.stop());
    const relay = startDelayRelay({ targetPort: gateway.wsPort, ...link });
    cleanups.push(() => relay.stop());
    const agent = new Agent(`ws://127.0.0.1:${relay.port}`, { id, to: service });
    cleanups.push(() => agent.stop());
    await agent.ready();
    return { gateway, relay };
  }

  test("an 8 MiB download and an 8 MiB streamed upload arrive intact", async () => {
    const service = startEchoService();
    cleanups.push(() => service.stop(true));
    const { gateway } = await overRelay(service.port, "pi-slow");

    let t0 = performance.now();
    const down = await gateway.fetch("pi-slow", `/bytes/${SIZE}`);
    expect(down.status).toBe(200);
    const got = new Uint8Array(await down.arrayBuffer());
    const downMs = performance.now() - t0;
    expect(got.byteLength).toBe(SIZE);
    const payload = patternBytes(SIZE);
    expect(await sha256(got)).toBe(await sha256(payload));

    const chunk = 64 * 1024;
    let offset = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= SIZE) return controller.close();
        controller.enqueue(payload.slice(offset, offset + chunk));
        offset += chunk;
      },
    });
    t0 = performance.now();
    const up = await gateway.fetch("pi-slow", "/upload", { method: "POST", body });
    expect(up.status).toBe(200);
    const answer = (await up.json()) as { length: number; sha256: string };
    const upMs = performance.now() - t0;
    expect(answer).toEqual({ length: SIZE, sha256: await sha256(payload) });
    console.log(
      `slow link: ${JSON.stringify({
        download: `${mib(SIZE)} in ${Math.round(downMs)} ms, ${throughput(SIZE, downMs)}`,
        upload: `${mib(SIZE)} in ${Math.round(upMs)} ms, ${throughput(SIZE, upMs)}`,
      })}`,
    );
  }, 120_000);

  test("a WebSocket through the tunnel echoes every message byte for byte", async () => {
    const service = startWebSocketService();
    cleanups.push(() => service.stop());
    const { gateway } = await overRelay(service.port, "pi-slow-ws");
    const ws = new WebSocket(`ws://127.0.0.1:${gateway.httpPort}/echo`, {
      headers: { host: `pi-slow-ws.${DOMAIN}:${gateway.httpPort}` },
      perMessageDeflate: false,
    } as Bun.WebSocketOptions);
    ws.binaryType = "arraybuffer";
    const received: (string | ArrayBuffer)[] = [];
    const arrived: (() => void)[] = [];
    ws.onmessage = (event) => {
      received.push(event.data as string | ArrayBuffer);
      arrived.shift()?.();
    };
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("WebSocket through the tunnel did not open"));
    });
    const sent: (string | Uint8Array)[] = [
      "hello",
      patternBytes(1000, 11),
      "ünïcödé ✓",
      patternBytes(MiB, 12),
      patternBytes(200 * 1024, 13),
      "last",
    ];
    const t0 = performance.now();
    for (const message of sent) ws.send(message);
    await eventually(async () => expect(received.length).toBe(sent.length), 60_000);
    const ms = performance.now() - t0;
    for (let i = 0; i < sent.length; i++) {
      const want = sent[i] as string | Uint8Array;
      const got = received[i] as string | ArrayBuffer;
      if (typeof want === "string") expect(got).toBe(want);
      else expect(Buffer.from(got as ArrayBuffer).equals(Buffer.from(want))).toBe(true);
    }
    const bytes = sent.reduce(
      (sum, m) => sum + (typeof m === "string" ? Buffer.byteLength(m) : m.byteLength),
      0,
    );
    console.log(
      `slow link websocket: ${JSON.stringify({ messages: sent.length, bytes, echoedInMs: Math.round(ms) })}`,
    );
    ws.close();
  }, 90_000);

  test("server-sent events arrive complete and in order", async () => {
    const EVENTS = 20;
    const service = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch() {
        let i = 0;
        let timer: ReturnType<typeof setInterval> | undefined;
        const encoder = new TextEncoder();
        return new Response(
          new ReadableStream({
            start(controller) {
              timer = setInterval(() => {
                controller.enqueue(encoder.encode(`id: ${i}\nevent: tick\ndata: event ${i}\n\n`));
                if (++i === EVENTS) {
                  clearInterval(timer);
                  controller.close();
                }
              }, 100);
            },
            cancel() {
              clearInterval(timer);
            },
          }),
          { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } },
        );
      },
    });
    cleanups.push(() => service.stop(true));
    const { gateway } = await overRelay(service.port as number, "pi-slow-sse");
    const t0 = performance.now();
    const res = await gateway.fetch("pi-slow-sse", "/events", { headers: { accept: "text/event-stream" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const decoder = new TextDecoder();
    let text = "";
    const firstEventAfter: number[] = [];
    for await (const chunk of res.body as ReadableStream<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      if (firstEventAfter.length === 0) firstEventAfter.push(Math.round(performance.now() - t0));
    }
    const events = text
      .split("\n\n")
      .filter((block) => block !== "")
      .map((block) => /data: (.*)/.exec(block)?.[1]);
    expect(events).toEqual(Array.from({ length: EVENTS }, (_, i) => `event ${i}`));
    console.log(
      `slow link sse: ${JSON.stringify({ events: events.length, firstChunkMs: firstEventAfter[0], totalMs: Math.round(performance.now() - t0) })}`,
    );
  }, 60_000);
});
