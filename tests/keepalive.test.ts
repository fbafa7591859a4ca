// The agent's keep-alive connections to the local service, against each way a real service ends
// one: closing it while idle, closing or resetting it as the next request arrives, and
// `Connection: close` on its last response. No request may pay a timeout for the service's choice.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { ServerWebSocket, Socket } from "bun";
import { type TunnelClose, TunnelClose_Reason } from "../shared/gen/tunnel_pb.ts";
import {
  decodeEnvelope,
  encodeControl,
  encodeData,
  encodeEnvelope,
  INITIAL_WINDOW,
} from "../shared/protocol.ts";
import { Agent, DOMAIN, eventually, Gateway } from "./harness.ts";

const REQUEST_TIMEOUT_S = 3;
/** Past the gateway's head timeout: a fetch still open then has hung. */
const CLIENT_TIMEOUT_MS = REQUEST_TIMEOUT_S * 1000 + 2_000;

/** What the service does with the request that arrives on a connection it has served before. */
type OnReuse = "answer" | "fin" | "rst" | "ignore";

interface ServiceOptions {
  onReuse: OnReuse;
  /** Closes each connection this long after its first response (an idle keep-alive timer). */
  closeIdleAfterMs?: number;
  /** Ends the first response with `Connection: close` (and keeps the socket open, unread). */
  connectionClose?: boolean;
}

interface Conn {
  n: number;
  requests: number;
  seen: string;
}

/** A raw HTTP/1.1 service that logs each request it answers as "<connection>:<path>". */
function startService(options: ServiceOptions) {
  const answered: string[] = [];
  let connections = 0;
  const answer = (socket: Socket<Conn>, path: string) => {
    const close = options.connectionClose ? "Connection: close\r\n" : "";
    socket.write(`HTTP/1.1 200 OK\r\n${close}Content-Length: ${path.length}\r\n\r\n${path}`);
    answered.push(`${socket.data.n}:${path}`);
  };
  const listener = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { n: ++connections, requests: 0, seen: "" };
      },
      data(socket, bytes) {
        socket.data.seen += Buffer.from(bytes).toString("latin1");
        const end = socket.data.seen.indexOf("\r\n\r\n");
        if (end === -1) return;
        const path = socket.data.seen.split(" ")[1] as string;
        socket.data.seen = socket.data.seen.slice(end + 4);
        if (++socket.data.requests === 1) {
          answer(socket, path);
          if (options.closeIdleAfterMs !== undefined)
            setTimeout(() => socket.end(), options.closeIdleAfterMs);
          return;
        }
        if (options.onReuse === "fin") return void socket.end();
        if (options.onReuse === "rst") return void socket.terminate();
        if (options.onReuse === "answer") answer(socket, path);
      },
    },
  });
  return {
    port: listener.port,
    answered,
    get connections() {
      return connections;
    },
    stop: () => listener.stop(true),
  };
}

let gateway: Gateway;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  gateway = await Gateway.start({ args: ["--request-timeout", String(REQUEST_TIMEOUT_S)] });
});
afterAll(() => gateway.stop());
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let agents = 0;
async function tunnelTo(options: ServiceOptions) {
  const service = startService(options);
  cleanups.push(service.stop);
  const agent = await Agent.start(gateway, { id: `pi-keep-${++agents}`, to: service.port });
  cleanups.push(() => agent.stop());
  const send = async (path: string, init: RequestInit = {}) => {
    const res = await gateway.fetch(agent.id, path, {
      ...init,
      signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
    });
    return [res.status, res.headers.get("x-tunnel-error"), await res.text()];
  };
  return { service, agent, send };
}

describe("a local service that ends a kept-alive connection", () => {
  test("FIN while idle: the dead connection leaves the pool and the next request opens a new one", async () => {
    const { service, send } = await tunnelTo({ onReuse: "answer", closeIdleAfterMs: 50 });
    expect(await send("/one")).toEqual([200, null, "/one"]);
    await Bun.sleep(300); // the service's idle timer fires meanwhile
    expect(await send("/two")).toEqual([200, null, "/two"]);
    expect(service.answered).toEqual(["1:/one", "2:/two"]);
  });

  for (const how of ["fin", "rst"] as const) {
    test(`${how.toUpperCase()} as the next request arrives: a GET is sent again on a fresh connection`, async () => {
      const { service, agent, send } = await tunnelTo({ onReuse: how });
      for (let i = 1; i <= 4; i++) expect(await send(`/r${i}`)).toEqual([200, null, `/r${i}`]);
      // Every connection answers once and drops the next request, which goes out again.
      expect(service.answered).toEqual(["1:/r1", "2:/r2", "3:/r3", "4:/r4"]);
      expect(service.connections).toBe(4);
      expect(agent.proc.output.text).not.toMatch(/unhandled|cannot expect/);
    });
  }

  test("a POST is not sent twice: dropped unanswered, it gets a clean 502 at once", async () => {
    const { service, send } = await tunnelTo({ onReuse: "fin" });
    expect(await send("/first")).toEqual([200, null, "/first"]);
    const started = performance.now();
    const [status, code] = await send("/order", { method: "POST", body: "one pizza" });
    expect([status, code]).toEqual([502, "local_error"]);
    // Well before the head timeout: the close itself is the answer.
    expect(performance.now() - started).toBeLessThan(REQUEST_TIMEOUT_S * 1000);
    expect(service.answered).toEqual(["1:/first"]);
  });

  test("a POST with an Idempotency-Key may be sent again", async () => {
    const { service, send } = await tunnelTo({ onReuse: "fin" });
    expect(await send("/first")).toEqual([200, null, "/first"]);
    const init = { method: "POST", body: "one pizza", headers: { "idempotency-key": "order-17" } };
    expect(await send("/order", init)).toEqual([200, null, "/order"]);
    expect(service.answered).toEqual(["1:/first", "2:/order"]);
  });

  test("a POST does not take a connection that idled long enough for the service to close it", async () => {
    const { service, send } = await tunnelTo({ onReuse: "fin" });
    expect(await send("/first")).toEqual([200, null, "/first"]);
    await Bun.sleep(1_300);
    expect(await send("/order", { method: "POST", body: "one pizza" })).toEqual([200, null, "/order"]);
    expect(service.answered).toEqual(["1:/first", "2:/order"]);
  });

  test("Connection: close on a response: the connection is never reused, even if left open", async () => {
    const { service, send } = await tunnelTo({ onReuse: "ignore", connectionClose: true });
    for (let i = 1; i <= 3; i++) expect(await send(`/c${i}`)).toEqual([200, null, `/c${i}`]);
    expect(service.answered).toEqual(["1:/c1", "2:/c2", "3:/c3"]);
  });
});

// A hand-driven gateway: the real agent connects to it, and the test sends what the real
// gateway never would, to prove the agent holds its own line.
describe("a streamed request body that breaks its Content-Length", () => {
  let received: string[];
  let servicePort: number;
  let stopService: () => void;

  beforeAll(() => {
    received = [];
    const listener = Bun.listen<{ bytes: string }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          socket.data = { bytes: "" };
        },
        data(socket, bytes) {
          socket.data.bytes += Buffer.from(bytes).toString("latin1");
          received.push(Buffer.from(bytes).toString("latin1"));
        },
      },
    });
    servicePort = listener.port;
    stopService = () => listener.stop(true);
  });
  afterAll(() => stopService());

  async function fakeGateway() {
    const closes: TunnelClose[] = [];
    let peer: ServerWebSocket<undefined> | undefined;
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: {
        message(ws, message) {
          const frame = decodeEnvelope(message as Uint8Array);
          if (frame.case === "connect") {
            peer = ws;
            const connected = {
              sessionId: "s1",
              url: `http://pi-count.${DOMAIN}`,
              heartbeatIntervalMs: 15_000,
              initialWindow: INITIAL_WINDOW,
              maxFramePayload: 16_384,
            };
            ws.send(encodeControl({ case: "connected", value: connected }));
          }
          if (frame.case === "close") closes.push(frame.value);
        },
      },
    });
    cleanups.push(() => server.stop(true));
    const agent = new Agent(`ws://127.0.0.1:${server.port}`, { id: "pi-count", to: servicePort });
    cleanups.push(() => agent.stop());
    await agent.ready();
    const request = (streamId: number, contentLength: number) =>
      (peer as ServerWebSocket<undefined>).send(
        encodeEnvelope({
          case: "request",
          value: {
            streamId,
            requestId: `r${streamId}`,
            method: "POST",
            path: `/s${streamId}`,
            headers: [
              { name: "host", value: "device.local" },
              { name: "content-length", value: String(contentLength) },
            ],
            endStream: false,
            window: INITIAL_WINDOW,
          },
        }),
      );
    const data = (streamId: number, text: string, endStream: boolean) =>
      (peer as ServerWebSocket<undefined>).send(
        encodeData(streamId, new TextEncoder().encode(text), endStream),
      );
    return { closes, request, data };
  }

  test("bytes beyond the declared length end the stream and never reach the service", async () => {
    received.length = 0;
    const gw = await fakeGateway();
    gw.request(1, 5);
    gw.data(1, "hello", false);
    await eventually(async () => expect(received.join("")).toEndWith("\r\n\r\nhello"));
    gw.data(1, "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", true);
    await eventually(async () => {
      expect(gw.closes.map((c) => [c.streamId, c.reason])).toEqual([[1, TunnelClose_Reason.PROTOCOL_ERROR]]);
    });
    expect(gw.closes[0]?.message).toContain("longer than its content-length 5");
    expect(received.join("")).not.toContain("smuggled");
  });

  test("a body that ends short of the declared length ends the stream", async () => {
    received.length = 0;
    const gw = await fakeGateway();
    gw.request(3, 10);
    gw.data(3, "short", true);
    await eventually(async () => {
      expect(gw.closes.map((c) => [c.streamId, c.reason])).toEqual([[3, TunnelClose_Reason.PROTOCOL_ERROR]]);
    });
    expect(gw.closes[0]?.message).toContain("5 bytes short of its content-length 10");
  });
});
