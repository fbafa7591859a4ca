// Streams that are long, slow, quiet, huge or many: flow control keeps each one within its window,
// none of them blocks another, and every stream's state is gone once it ends.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { MAX_STREAM_WINDOW } from "../shared/flow.ts";
import { Agent, adminUrl, eventually, Gateway, scrape } from "./harness.ts";
import { type OnPort, startEchoService } from "./services.ts";

const MiB = 1024 * 1024;
const CHUNK = new Uint8Array(64 * 1024).fill(0x5a);

/** What the streaming service has seen, so tests can check it from the other end. */
const seen = { sseProduced: 0, endlessCancelled: 0, sinkBytes: 0, countedProduced: 0 };
let releaseNextEvent: () => void = () => {};

/** A body of `size` bytes made of one reused chunk: cheap to produce at any size. */
function sizedBody(
  size: number,
  onCancel?: () => void,
  onChunk?: (n: number) => void,
): ReadableStream<Uint8Array> {
  let left = size;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) return controller.close();
      const n = Math.min(left, CHUNK.byteLength);
      onChunk?.(n);
      controller.enqueue(n === CHUNK.byteLength ? CHUNK : CHUNK.subarray(0, n));
      left -= n;
    },
    cancel: onCancel,
  });
}

function startStreamingService(): OnPort<Bun.Server<undefined>> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    maxRequestBodySize: 4 * 1024 * MiB,
    async fetch(req) {
      const [, route, arg] = new URL(req.url).pathname.split("/");
      switch (route) {
        case "sse":
          return new Response(sseEvents(Number(arg)), { headers: { "content-type": "text/event-stream" } });
        case "quiet":
          return new Response(quietBody(Number(arg) * 1000));
        case "size":
          return new Response(sizedBody(Number(arg)));
        case "counted":
          seen.countedProduced = 0;
          return new Response(sizedBody(Number(arg), undefined, (n) => (seen.countedProduced += n)));
        case "endless":
          return new Response(sizedBody(Number.POSITIVE_INFINITY, () => seen.endlessCancelled++));
        case "sink": {
          for await (const chunk of req.body ?? []) seen.sinkBytes += chunk.byteLength;
          return new Response(String(seen.sinkBytes));
        }
        default:
          return new Response("no such route", { status: 404 });
      }
    },
  }) as OnPort<Bun.Server<undefined>>;
}

/** Event N+1 is produced only once the test has released it, after seeing event N. */
function sseEvents(count: number): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  seen.sseProduced = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (seen.sseProduced === count) return controller.close();
      if (seen.sseProduced > 0) await new Promise<void>((resolve) => (releaseNextEvent = resolve));
      seen.sseProduced++;
      controller.enqueue(encoder.encode(`id: ${seen.sseProduced}\ndata: event ${seen.sseProduced}\n\n`));
    },
  });
}

/** "first", a silence of `ms`, then "second": longer than any HTTP idle timer in the path. */
function quietBody(ms: number): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let step = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (step === 0) controller.enqueue(encoder.encode("first;"));
      if (step === 1) {
        await Bun.sleep(ms);
        controller.enqueue(encoder.encode("second"));
      }
      if (step === 2) controller.close();
      step++;
    },
  });
}

async function readLine(reader: ReadableStreamDefaultReader<Uint8Array>, until: string): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes(until)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before ${JSON.stringify(until)}; got ${text}`);
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

/** Reads a body to its end, counting bytes without keeping them. */
async function drain(res: Response): Promise<number> {
  let total = 0;
  for await (const chunk of res.body ?? []) total += chunk.byteLength;
  return total;
}

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb * 1024;
}

let service: OnPort<Bun.Server<undefined>>;
let gateway: Gateway;
let agent: Agent;
let gatewayAdmin: string;
let agentAdmin: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  service = startStreamingService();
  gateway = await Gateway.start({ args: ["--max-streams", "2048", "--admin", "127.0.0.1:0"] });
  gatewayAdmin = await adminUrl(gateway.proc);
  agent = await Agent.start(gateway, { id: "pi-stream", to: service.port, args: ["--admin", "127.0.0.1:0"] });
  agentAdmin = await adminUrl(agent.proc);
});

/** Bun reads a socket in pieces of up to 512 KiB; the agent pauses the socket once one has arrived. */
const SOCKET_READ = 512 * 1024;

/**
 * Both processes' own accounting: no stream is left open, and no stream ever held more body bytes
 * than the largest window a stream may grow to on the gateway, or that plus one socket read on
 * the agent. (Beyond its current window a stream's data is a protocol error, never buffered.)
 */
async function expectStreamsSettled(): Promise<void> {
  await eventually(async () => {
    const [atGateway, atAgent] = await Promise.all([scrape(gatewayAdmin), scrape(agentAdmin)]);
    expect(atGateway.get("indranet_streams_open")).toBe(0);
    expect(atAgent.get("indranet_streams_open")).toBe(0);
    expect(atGateway.get("indranet_stream_peak_buffered_bytes")).toBeLessThanOrEqual(MAX_STREAM_WINDOW);
    expect(atAgent.get("indranet_stream_peak_buffered_bytes")).toBeLessThanOrEqual(
      MAX_STREAM_WINDOW + SOCKET_READ,
    );
  });
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await expectStreamsSettled();
});

afterAll(async () => {
  await agent.stop();
  await gateway.stop();
  service.stop(true);
});

describe("long-lived responses", () => {
  test("server-sent events: the client sees event N before the service produces event N+1", async () => {
    const res = await gateway.fetch("pi-stream", "/sse/4");
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    for (let n = 1; n <= 4; n++) {
      expect(await readLine(reader, `data: event ${n}\n\n`)).toContain(`id: ${n}`);
      expect(seen.sseProduced).toBe(n);
      releaseNextEvent();
    }
    expect((await reader.read()).done).toBe(true);
  });

  test("a stream quiet for longer than Bun's 10 s idle timer is not cut", async () => {
    const res = await gateway.fetch("pi-stream", "/quiet/11");
    expect(await res.text()).toBe("first;second");
  }, 30_000);

  test("the tunnel's own idle timeout cuts a stream that stays quiet too long", async () => {
    const strict = await Gateway.start({ args: ["--idle-timeout", "1"] });
    cleanups.push(() => strict.stop());
    const strictAgent = await Agent.start(strict, { id: "pi-stream", to: service.port });
    cleanups.push(() => strictAgent.stop());
    const res = await strict.fetch("pi-stream", "/quiet/5");
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    // The agent is told, and the tunnel keeps serving.
    expect((await strict.fetch("pi-stream", "/size/10")).status).toBe(200);
  });
});

describe("flow control", () => {
  test("a slow reader holds one window while another stream on the same agent runs at full speed", async () => {
    const slow = await gateway.fetch("pi-stream", `/counted/${256 * MiB}`);
    const slowReader = slow.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    let slowBytes = 0;
    const trickle = (async () => {
      for (let i = 0; i < 20; i++) {
        const { value, done } = await slowReader.read();
        if (done) break;
        slowBytes += value.byteLength;
        await Bun.sleep(50);
      }
    })();

    const fast = await gateway.fetch("pi-stream", `/size/${64 * MiB}`);
    expect(await drain(fast)).toBe(64 * MiB);
    await trickle;
    // The service was held back, not drained into the tunnel: what it produced for the slow stream
    // is what the client read plus the windows, the kernel's socket buffers on both loopback hops
    // and the client's own read-ahead (about 12 MiB here). Without credit the agent would have
    // read the whole 256 MiB at loopback speed meanwhile.
    await Bun.sleep(200);
    const heldBack = seen.countedProduced - slowBytes;
    console.log(`slow reader: read ${slowBytes} bytes, service produced ${seen.countedProduced}`);
    expect(heldBack).toBeLessThan(64 * MiB);
    await slowReader.cancel();
  });

  test("a client that goes away mid-download closes the local connection", async () => {
    const before = seen.endlessCancelled;
    const controller = new AbortController();
    const res = await gateway.fetch("pi-stream", "/endless", { signal: controller.signal });
    const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    await reader.read();
    controller.abort();
    await eventually(async () => expect(seen.endlessCancelled).toBe(before + 1));
  });

  test("a local service that answers and closes mid-upload: the client gets that answer", async () => {
    // Refuses after the first 100 kB, as a server enforcing an upload limit does.
    let received = 0;
    const refusing = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, bytes) {
          received += bytes.byteLength;
          if (received < 100_000) return;
          socket.write(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
          );
          socket.end();
        },
      },
    });
    cleanups.push(() => refusing.stop(true));
    const refusingAgent = await Agent.start(gateway, { id: "pi-refuse", to: refusing.port });
    cleanups.push(() => refusingAgent.stop());
    const res = await gateway.fetch("pi-refuse", "/upload", { method: "POST", body: sizedBody(64 * MiB) });
    expect(res.status).toBe(413);
    expect(await res.text()).toBe("too large");
    // The refused upload leaves nothing behind that would disturb the next request.
    expect((await gateway.fetch("pi-stream", "/size/10")).status).toBe(200);
  });

  test("1 GiB down and 1 GiB up, three times, keep the gateway's and the agent's memory flat", async () => {
    const GiB = 1024 * MiB;
    const pids = [gateway.proc.pid, agent.proc.pid];
    const baseline = pids.map(rssBytes);
    const peak = [...baseline];
    // The lowest RSS of each process during each round: a sample just before a collection is a
    // peak of garbage, and a leak shows as a floor that keeps rising.
    const floors: number[][] = [];
    let floor = pids.map(() => Number.POSITIVE_INFINITY);
    const sampler = setInterval(() => {
      pids.forEach((pid, i) => {
        const rss = rssBytes(pid);
        peak[i] = Math.max(peak[i] as number, rss);
        floor[i] = Math.min(floor[i] as number, rss);
      });
    }, 100);
    const roundTrip = async () => {
      floor = pids.map(() => Number.POSITIVE_INFINITY);
      expect(await drain(await gateway.fetch("pi-stream", `/size/${GiB}`))).toBe(GiB);
      seen.sinkBytes = 0;
      const up = await gateway.fetch("pi-stream", "/sink", { method: "POST", body: sizedBody(GiB) });
      expect(await up.text()).toBe(String(GiB));
      floors.push(floor);
    };
    try {
      for (let round = 0; round < 3; round++) await roundTrip();
    } finally {
      clearInterval(sampler);
    }
    const mib = (n: number) => Math.round(n / MiB);
    console.log(
      `1 GiB rounds, MiB [gateway, agent]: baseline ${baseline.map(mib)}, floors ${floors.map((f) => f.map(mib)).join(" | ")}, peak ${peak.map(mib)}`,
    );
    pids.forEach((_, i) => {
      // Allocator and GC slack settle during the first gigabyte; after that the floor holds.
      expect((floors[2]?.[i] as number) - (floors[1]?.[i] as number)).toBeLessThan(32 * MiB);
      // Flow control bounds what is buffered, whatever the traffic.
      expect((peak[i] as number) - (baseline[i] as number)).toBeLessThan(160 * MiB);
    });
  }, 120_000);
});

describe("many streams", () => {
  test("1,000 concurrent requests through one agent are each answered with their own body", async () => {
    const sizes = Array.from({ length: 1000 }, (_, i) => 1 + ((i * 7919) % 5000));
    const got = await Promise.all(
      sizes.map(
        async (size) => (await (await gateway.fetch("pi-stream", `/size/${size}`)).arrayBuffer()).byteLength,
      ),
    );
    expect(got).toEqual(sizes);
  }, 60_000);

  test("past the per-agent stream limit the gateway answers 503 with Retry-After", async () => {
    const echo = startEchoService();
    cleanups.push(() => echo.stop(true));
    const limited = await Gateway.start({ args: ["--max-streams", "3"] });
    cleanups.push(() => limited.stop());
    const limitedAgent = await Agent.start(limited, { id: "pi-stream", to: echo.port });
    cleanups.push(() => limitedAgent.stop());
    const controller = new AbortController();
    const hanging = Array.from({ length: 3 }, () =>
      limited.fetch("pi-stream", "/hang", { signal: controller.signal }).catch(() => null),
    );
    await eventually(async () => expect(echo.hangsSeen).toBe(3));
    const res = await limited.fetch("pi-stream", "/status/200");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(res.headers.get("x-tunnel-error")).toBe("too_many_streams");
    controller.abort();
    await Promise.all(hanging);
    await eventually(async () => expect((await limited.fetch("pi-stream", "/status/200")).status).toBe(200));
  });
});
