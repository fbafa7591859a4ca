// Attacks on the real gateway process: unauthenticated sockets, an authenticated agent that
// breaks the protocol, a hostile gateway against the real agent, and a local service that
// frames its responses badly. Whatever happens, the attacker loses its own stream or
// connection, the process keeps running and a good agent on another id keeps serving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerWebSocket } from "bun";
import { MAX_MESSAGE_BYTES, writeFrames } from "../shared/batch.ts";
import type { TunnelRequest } from "../shared/gen/tunnel_pb.ts";
import { ConnectError_Code as Code, TunnelClose_Reason } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope, encodeClose, encodeEnvelope, MAX_ENVELOPE_BYTES } from "../shared/protocol.ts";
import { Agent, DOMAIN, eventually, fromSource, Gateway, Proc } from "./harness.ts";
import { connectFrame, openSocket, RogueAgent } from "./rogue.ts";
import { startEchoService } from "./services.ts";

let gateway: Gateway;
let good: Agent;
const service = startEchoService();

beforeAll(async () => {
  gateway = await Gateway.start();
  good = await Agent.start(gateway, { id: "pi-good", to: service.port });
});

afterAll(async () => {
  await good?.stop();
  await gateway?.stop();
  service.stop(true);
});

/** The gateway process is alive and the good agent still answers through it. */
async function expectGatewayServing(): Promise<void> {
  expect(gateway.proc.child.exitCode).toBeNull();
  const res = await gateway.fetch("pi-good", "/still-here");
  expect(res.status).toBe(200);
  expect(((await res.json()) as { path: string }).path).toBe("/still-here");
}

/** Sends a request to the rogue agent's id and waits for the gateway to hand it over. */
async function requestTo(
  rogue: RogueAgent,
  agentId: string,
  path = "/",
): Promise<{
  request: TunnelRequest;
  response: Promise<Response>;
}> {
  const response = gateway.fetch(agentId, path);
  const request = await rogue.nextRequest();
  return { request, response };
}

/** Reads a body to the end; a broken stream yields "broken" instead of throwing. */
async function bodyOrBroken(res: Response): Promise<string> {
  try {
    return await res.text();
  } catch {
    return "broken";
  }
}

describe("an authenticated agent that breaks the protocol", () => {
  test("an undecodable frame closes its connection and fails its streams with 502", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-1");
    const { response } = await requestTo(rogue, "pi-rogue-1");
    rogue.sendRaw(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]));
    const closed = await rogue.closed;
    expect(closed.code).toBe(1002);
    const res = await response;
    expect(res.status).toBe(502);
    expect(res.headers.get("x-tunnel-error")).toBe("agent_disconnected");
    await expectGatewayServing();
  });

  test("frames for streams that do not exist are ignored", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-2");
    const body = new Uint8Array(10);
    rogue.send({ case: "response", value: { streamId: 4242, status: 200, body, endStream: true } });
    rogue.send({ case: "data", value: { streamId: 77, payload: body, endStream: false } });
    rogue.send({ case: "close", value: { streamId: 78, reason: 2, message: "nope" } });
    rogue.send({
      case: "control",
      value: { kind: { case: "windowUpdate", value: { streamId: 79, increment: 0xffffffff } } },
    });
    const { request, response } = await requestTo(rogue, "pi-rogue-2");
    rogue.answer(request.streamId, 200, "fine");
    const res = await response;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("fine");
    expect(rogue.open).toBe(true);
    rogue.close();
    await expectGatewayServing();
  });

  test("a second response head breaks that stream only", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-3");
    const { request, response } = await requestTo(rogue, "pi-rogue-3");
    const head = { streamId: request.streamId, status: 200, body: new TextEncoder().encode("one") };
    rogue.send({ case: "response", value: { ...head, endStream: false } });
    const res = await response;
    expect(res.status).toBe(200);
    rogue.send({ case: "response", value: { ...head, status: 201, endStream: true } });
    expect(await bodyOrBroken(res)).toBe("broken");
    await eventually(async () => {
      expect(rogue.closes.map((c) => [c.streamId, c.reason])).toContainEqual([
        request.streamId,
        TunnelClose_Reason.PROTOCOL_ERROR,
      ]);
    });
    // Its connection survives and serves the next request.
    const next = await requestTo(rogue, "pi-rogue-3");
    rogue.answer(next.request.streamId, 200, "again");
    expect(await (await next.response).text()).toBe("again");
    rogue.close();
    await expectGatewayServing();
  });

  test("a stream cut in the same message as its head gives the client a broken body, not a wait", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-3b");
    // A fresh connection: on a reused one the client itself repeats a GET that was reset before
    // any response byte, and the repeat would wait for an answer the rogue never sends.
    const response = gateway.fetch("pi-rogue-3b", "/", { keepalive: false });
    const request = await rogue.nextRequest();
    const head = encodeEnvelope({
      case: "response",
      value: {
        streamId: request.streamId,
        status: 200,
        body: new TextEncoder().encode("one"),
        endStream: false,
      },
    });
    const close = encodeClose(request.streamId, TunnelClose_Reason.LOCAL_ERROR, "service went away");
    // One batch: the gateway handles both before Bun asks the response for its body.
    writeFrames([head, close], true, (message) => {
      rogue.sendRaw(message.slice());
      return true;
    });
    // Nothing of the body had gone out: the connection may be reset before the head, or the body
    // broken after it. Either is an answer; waiting on a body that will never come is not.
    const outcome = await response.then(bodyOrBroken, () => "broken");
    expect(outcome).toBe("broken");
    rogue.close();
    await expectGatewayServing();
  });

  test("body data beyond the granted credit breaks that stream", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-4");
    // A client that never reads, so no credit comes back however fast the gateway works.
    const client = await Bun.connect({
      hostname: "127.0.0.1",
      port: gateway.httpPort,
      socket: { data() {} },
    });
    client.write(`GET / HTTP/1.1\r\nHost: pi-rogue-4.${DOMAIN}\r\n\r\n`);
    client.pause();
    const request = await rogue.nextRequest();
    rogue.send({ case: "response", value: { streamId: request.streamId, status: 200, endStream: false } });
    const chunk = new Uint8Array(64 * 1024);
    for (let sent = 0; sent < 32 * 1024 * 1024; sent += chunk.length) {
      if (rogue.closes.length > 0 || !rogue.open) break;
      rogue.send({ case: "data", value: { streamId: request.streamId, payload: chunk, endStream: false } });
      if (sent % (1024 * 1024) === 0) await Bun.sleep(1);
    }
    await eventually(async () => {
      expect(rogue.closes.map((c) => [c.streamId, c.reason])).toContainEqual([
        request.streamId,
        TunnelClose_Reason.PROTOCOL_ERROR,
      ]);
    });
    client.end();
    // Only the stream was lost: the connection still carries the next request.
    const next = await requestTo(rogue, "pi-rogue-4");
    rogue.answer(next.request.streamId, 200, "again");
    expect(await (await next.response).text()).toBe("again");
    rogue.close();
    await expectGatewayServing();
  });

  for (const [what, status, headers] of [
    ["a status outside 100-599", 0, []],
    ["a status far outside the range", 70_000, []],
    ["an invalid header name", 200, [{ name: "bad name\r\nx-injected", value: "1" }]],
    ["a header value with CR LF", 200, [{ name: "x-split", value: "a\r\nset-cookie: stolen=1" }]],
    ["a header value with NUL", 200, [{ name: "x-nul", value: "a\0b" }]],
    [
      "hop-by-hop framing headers",
      200,
      [
        { name: "Transfer-Encoding", value: "chunked" },
        { name: "content-length", value: "2" },
        { name: "connection", value: "close, x-drop" },
        { name: "x-drop", value: "1" },
      ],
    ],
  ] as const) {
    test(`a response with ${what} never reaches the client as such`, async () => {
      const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-5");
      const { request, response } = await requestTo(rogue, "pi-rogue-5");
      rogue.send({
        case: "response",
        value: {
          streamId: request.streamId,
          status,
          headers: [...headers],
          body: new TextEncoder().encode("hello"),
          endStream: true,
        },
      });
      const res = await response;
      if (res.status === 502) {
        expect(res.headers.get("x-tunnel-error")).toBe("agent_error");
      } else {
        expect(res.status).toBe(200);
        expect(res.headers.get("transfer-encoding")).toBeNull();
        expect(res.headers.get("x-drop")).toBeNull();
        expect(await res.text()).toBe("hello");
      }
      expect(res.headers.get("set-cookie")).toBeNull();
      expect(res.headers.get("x-injected")).toBeNull();
      // A bad head costs the stream, not the connection.
      expect(rogue.open).toBe(true);
      rogue.close();
      await expectGatewayServing();
    });
  }

  test("oversized response headers that fit in a frame do not hurt the gateway", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-6");
    const { request, response } = await requestTo(rogue, "pi-rogue-6");
    const headers = Array.from({ length: 100 }, (_, i) => ({ name: `x-big-${i}`, value: "v".repeat(1000) }));
    rogue.send({
      case: "response",
      value: { streamId: request.streamId, status: 200, headers, endStream: true },
    });
    const status = await response.then(
      (res) => res.status,
      () => "client refused the head",
    );
    // They fit Bun's limits on the way out, so the client gets them as sent.
    expect(status).toBe(200);
    rogue.close();
    await expectGatewayServing();
  });

  test("a frame above the size limit closes the connection", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-7");
    rogue.sendRaw(new Uint8Array(MAX_MESSAGE_BYTES + 1));
    const closed = await rogue.closed;
    expect([closed.code, closed.reason]).toEqual([1009, "Received too big message"]);
    await expectGatewayServing();
  });

  test("an Envelope above its own limit in a message Bun accepts is a protocol error", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-7b");
    const frame = new Uint8Array(MAX_ENVELOPE_BYTES + 1);
    frame[0] = 0x2a; // Envelope.data, length-delimited: what follows does not matter
    rogue.sendRaw(frame);
    const closed = await rogue.closed;
    expect(closed.code).toBe(1002);
    expect(closed.reason).toContain(`exceeds ${MAX_ENVELOPE_BYTES}`);
    await expectGatewayServing();
  });

  test("a batch whose lengths overrun its message is a protocol error", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-7c");
    rogue.sendRaw(new Uint8Array([0x00, 0x05, 0x2a, 0x00]));
    const closed = await rogue.closed;
    expect([closed.code, closed.reason]).toEqual([1002, "batch entry of 5 bytes overruns its message"]);
    await expectGatewayServing();
  });

  test("a text frame closes the connection", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-8");
    rogue.sendRaw("hello");
    expect((await rogue.closed).code).toBe(1003);
    await expectGatewayServing();
  });

  test("messages only a gateway may send close the connection", async () => {
    const rogue = await RogueAgent.connect(gateway.wsUrl, "pi-rogue-9");
    rogue.send({ case: "request", value: { streamId: 1, method: "GET", path: "/" } });
    expect((await rogue.closed).code).toBe(1002);
    await expectGatewayServing();
  });
});

describe("before authentication", () => {
  async function firstAnswer(ws: WebSocket): Promise<{ code: Code | undefined; close: CloseEvent }> {
    let code: Code | undefined;
    ws.onmessage = (event) => {
      const message = decodeEnvelope(new Uint8Array(event.data as ArrayBuffer));
      if (message.case === "connectError") code = message.value.code;
    };
    const close = await new Promise<CloseEvent>((resolve) => {
      ws.onclose = resolve;
    });
    return { code, close };
  }

  test("an undecodable first frame is refused with a reason", async () => {
    const ws = await openSocket(gateway.wsUrl);
    ws.send(new Uint8Array([0x0a, 0xff, 0xff]));
    const { code, close } = await firstAnswer(ws);
    expect(code).toBe(Code.PROTOCOL_ERROR);
    expect(close.reason).toContain("undecodable");
  });

  test("an oversized first frame closes the connection", async () => {
    const ws = await openSocket(gateway.wsUrl);
    ws.send(new Uint8Array(MAX_MESSAGE_BYTES + 1));
    const { close } = await firstAnswer(ws);
    expect(close.code).toBe(1009);
    await expectGatewayServing();
  });

  test("a text first frame is refused", async () => {
    const ws = await openSocket(gateway.wsUrl);
    ws.send("GET / HTTP/1.1");
    const { code } = await firstAnswer(ws);
    expect(code).toBe(Code.PROTOCOL_ERROR);
  });

  test("a connection that never authenticates is closed after a few seconds", async () => {
    const ws = await openSocket(gateway.wsUrl);
    const { code, close } = await firstAnswer(ws);
    expect(code).toBe(Code.PROTOCOL_ERROR);
    expect(close.reason).toContain("no ConnectRequest");
  }, 15_000);

  test("frames after a refused ConnectRequest are not processed", async () => {
    const ws = await openSocket(gateway.wsUrl);
    ws.send(encodeEnvelope({ case: "control", value: { kind: { case: "ping", value: { seq: 1 } } } }));
    ws.send(connectFrame("pi-late"));
    await firstAnswer(ws);
    const res = await gateway.fetch("pi-late", "/");
    expect(res.status).toBe(404);
    expect(res.headers.get("x-tunnel-error")).toBe("agent_not_connected");
  });
});

describe("a local service that frames its response badly", () => {
  /** Answers every request head with `response` and counts the connections it was given. */
  function rawService(response: string) {
    let connections = 0;
    const listener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open() {
          connections++;
        },
        data(socket, bytes) {
          if (Buffer.from(bytes).includes("\r\n\r\n")) socket.write(response);
        },
      },
    });
    return { port: listener.port, connections: () => connections, stop: () => listener.stop(true) };
  }

  test("Transfer-Encoding beside Content-Length: chunked wins and the connection is not reused", async () => {
    const raw = rawService(
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    const agent = await Agent.start(gateway, { id: "pi-conflict", to: raw.port });
    try {
      for (let i = 0; i < 2; i++) {
        const res = await gateway.fetch("pi-conflict", `/${i}`);
        expect(res.status).toBe(200);
        expect(await res.text()).toBe("hello");
      }
      expect(raw.connections()).toBe(2);
    } finally {
      await agent.stop();
      raw.stop();
    }
  });

  test("bytes beyond Content-Length never reach the next request on that agent", async () => {
    // Each answer carries more bytes than it announces; the extra bytes look like a second
    // response that a careless proxy would hand to whoever asks next on that connection.
    const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSTOLEN!";
    const raw = rawService(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst${smuggled}`);
    const agent = await Agent.start(gateway, { id: "pi-smuggle", to: raw.port });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await gateway.fetch("pi-smuggle", `/${i}`);
        expect(res.status).toBe(200);
        expect(await res.text()).toBe("first");
      }
      expect(raw.connections()).toBe(3);
    } finally {
      await agent.stop();
      raw.stop();
    }
  });
});

describe("host names", () => {
  test("only DNS-label agent ids route; anything else is an unknown host", async () => {
    for (const host of [`pi_good.${DOMAIN}`, `-x.${DOMAIN}`, `a.b.${DOMAIN}`, `pi-good.other.test`]) {
      const res = await fetch(`http://127.0.0.1:${gateway.httpPort}/`, { headers: { host } });
      expect([host, res.status, res.headers.get("x-tunnel-error")]).toEqual([host, 404, "unknown_host"]);
    }
  });

  test("host names are case-insensitive: an uppercase Host routes to the lowercase agent id", async () => {
    for (const host of [
      `PI-GOOD.${DOMAIN}`,
      `Pi-Good.TUNNEL.Test:${gateway.httpPort}`,
      `PI-GOOD.${DOMAIN}.`,
    ]) {
      const res = await fetch(`http://127.0.0.1:${gateway.httpPort}/case`, { headers: { host } });
      expect([host, res.status, res.headers.get("x-tunnel-error")]).toEqual([host, 200, null]);
      expect(((await res.json()) as { path: string }).path).toBe("/case");
    }
  });
});

describe("a hostile gateway against the real agent", () => {
  test("injection attempts get 400 and the local service never sees their bytes", async () => {
    let received = "";
    const local = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, bytes) {
          received += Buffer.from(bytes).toString("latin1");
          if (received.endsWith("\r\n\r\n")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        },
      },
    });
    const responses = new Map<number, number>();
    const ready = Promise.withResolvers<ServerWebSocket<unknown>>();
    const fake = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: {
        message(ws, frame) {
          const message = decodeEnvelope(new Uint8Array(frame as Buffer));
          if (message.case === "connect") {
            const connected = { sessionId: "fake", url: "http://fake/", heartbeatIntervalMs: 15_000 };
            ws.send(
              encodeEnvelope({ case: "control", value: { kind: { case: "connected", value: connected } } }),
            );
            ready.resolve(ws);
          }
          if (message.case === "response") responses.set(message.value.streamId, message.value.status);
        },
      },
    });
    const agent = new Agent(`ws://127.0.0.1:${fake.port}`, { id: "pi-victim", to: local.port });
    try {
      const ws = await ready.promise;
      await agent.ready();
      const evil: [string, string, [string, string][]][] = [
        ["GET", "/a\r\nX-Evil: 1", []],
        ["GET", "/a HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /b", []],
        ["GET", "evil", []],
        ["GET /evil HTTP/1.1\r\n", "/", []],
        ["G ET", "/", []],
        ["GET", "/", [["x-a", "v\r\nX-Evil: 1"]]],
        ["GET", "/", [["x-a", "v\nX-Evil: 1"]]],
        ["GET", "/", [["x-a", "v\0evil"]]],
        ["GET", "/", [["x evil", "1"]]],
        ["GET", "/", [["x-evil:", "1"]]],
      ];
      evil.forEach(([method, path, headers], i) => {
        const request = {
          streamId: i + 1,
          requestId: `r${i}`,
          method,
          path,
          headers: headers.map(([name, value]) => ({ name, value })),
          endStream: true,
          window: 65_536,
        };
        ws.send(encodeEnvelope({ case: "request", value: request }));
      });
      await eventually(async () => expect(responses.size).toBe(evil.length));
      expect([...responses.values()].every((status) => status === 400)).toBe(true);

      // Hop-by-hop headers are dropped, not refused: the request goes out without them.
      const hopByHop = [
        { name: "transfer-encoding", value: "chunked" },
        { name: "connection", value: "close, x-hop" },
        { name: "x-hop", value: "1" },
        { name: "upgrade", value: "h2c" },
        { name: "x-fine", value: "yes" },
      ];
      const request = { streamId: 100, requestId: "ok", method: "GET", path: "/fine", headers: hopByHop };
      ws.send(encodeEnvelope({ case: "request", value: { ...request, endStream: true, window: 65_536 } }));
      await eventually(async () => expect(responses.get(100)).toBe(200));
      expect(received).toStartWith("GET /fine HTTP/1.1\r\n");
      expect(received).toContain("x-fine: yes\r\n");
      expect(received.toLowerCase()).not.toContain("evil");
      expect(received.toLowerCase()).not.toContain("transfer-encoding");
      expect(received.toLowerCase()).not.toContain("x-hop");
      expect(received.toLowerCase()).not.toContain("upgrade");
      expect(received.match(/HTTP\/1\.1\r\n/g)).toHaveLength(1);
    } finally {
      await agent.stop();
      fake.stop(true);
      local.stop(true);
    }
  });
});

describe("forwarding headers", () => {
  const spoofed = {
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-host": "evil.example",
    "x-forwarded-proto": "https",
  };

  async function seenHeaders(gw: Gateway): Promise<Record<string, string[]>> {
    const res = await gw.fetch("pi-good", "/headers", { headers: spoofed });
    const echo = (await res.json()) as { headers: [string, string][] };
    const seen: Record<string, string[]> = {};
    for (const [name, value] of echo.headers) seen[name] = [...(seen[name] ?? []), value];
    return seen;
  }

  test("a client's own X-Forwarded-* headers are replaced", async () => {
    const seen = await seenHeaders(gateway);
    expect(seen["x-forwarded-for"]).toEqual(["127.0.0.1"]);
    expect(seen["x-forwarded-host"]).toEqual([`pi-good.${DOMAIN}:${gateway.httpPort}`]);
    expect(seen["x-forwarded-proto"]).toEqual(["http"]);
  });

  test("behind a trusted proxy they are kept, and the proxy's address is appended", async () => {
    const trusting = await Gateway.start({ args: ["--trust-proxy", "10.0.0.1,127.0.0.1"] });
    const agent = await Agent.start(trusting, { id: "pi-good", to: service.port });
    try {
      const seen = await seenHeaders(trusting);
      expect(seen["x-forwarded-for"]).toEqual(["6.6.6.6, 127.0.0.1"]);
      expect(seen["x-forwarded-host"]).toEqual(["evil.example"]);
      expect(seen["x-forwarded-proto"]).toEqual(["https"]);
    } finally {
      await agent.stop();
      await trusting.stop();
    }
  });
});

describe("secrets", () => {
  const SECRET = "file-secret-0123456789abcdef";

  test("secrets from files and the environment never show in ps or logs; loose files are warned about", async () => {
    const dir = mkdtempSync(join(tmpdir(), "indranet-secrets-"));
    const secretFile = join(dir, "kitchen.secret");
    writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o644 });
    chmodSync(secretFile, 0o644);
    const config = join(dir, "gateway.toml");
    writeFileSync(
      config,
      `[[tokens]]\ntoken = "tok-file"\nsecret_file = "kitchen.secret"\nagents = ["pi-*"]\n`,
      { mode: 0o600 },
    );
    const gw = new Proc(
      [
        ...fromSource("gateway"),
        "serve",
        "--config",
        config,
        "--bind",
        "127.0.0.1",
        "--http-port",
        "0",
        "--ws-port",
        "0",
        "--domain",
        DOMAIN,
      ],
      {},
    );
    const [, wsPort] = await gw.waitFor(/agents connect to ws:\/\/[^\s]+:(\d+)/);
    const token = { token: "tok-file", secret: SECRET, agents: [] };
    const fromFile = new Agent(`ws://127.0.0.1:${wsPort}`, {
      id: "pi-file",
      to: service.port,
      token,
      args: ["--secret-file", secretFile],
      env: { INDRANET_SECRET: "" },
    });
    const fromEnv = new Agent(`ws://127.0.0.1:${wsPort}`, { id: "pi-env", to: service.port, token });
    try {
      await fromFile.ready();
      await fromEnv.ready();
      for (const proc of [gw, fromFile.proc, fromEnv.proc]) {
        const cmdline = readFileSync(`/proc/${proc.pid}/cmdline`, "utf8").replaceAll("\0", " ");
        expect(cmdline).not.toContain(SECRET);
      }
      expect(gw.output.text).toContain("chmod 600");
      expect(fromFile.proc.output.text).toContain("chmod 600");

      // Failed attempts are refused, logged without the secret tried, and then rate-limited.
      const wrong = "wrong-secret-wrong-secret-wrong";
      let last: Code | undefined;
      for (let i = 0; i < 12; i++) {
        const ws = await openSocket(`ws://127.0.0.1:${wsPort}`);
        const answer = new Promise<Code | undefined>((resolve) => {
          ws.onmessage = (event) => {
            const message = decodeEnvelope(new Uint8Array(event.data as ArrayBuffer));
            resolve(message.case === "connectError" ? message.value.code : undefined);
          };
        });
        ws.send(connectFrame("pi-guess", { ...token, secret: wrong }));
        last = await answer;
        ws.close();
      }
      expect(last).toBe(Code.RATE_LIMITED);
      expect(gw.output.text).toContain("agent auth refused from 127.0.0.1");
      for (const text of [gw.output.text, fromFile.proc.output.text, fromEnv.proc.output.text]) {
        expect(text).not.toContain(SECRET);
        expect(text).not.toContain(wrong);
      }
    } finally {
      await fromFile.stop();
      await fromEnv.stop();
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--help shows no secret defaults", async () => {
    for (const [name, sub] of [
      ["gateway", "serve"],
      ["agent", "connect"],
    ] as const) {
      const proc = new Proc([...fromSource(name), sub, "--help"], { INDRANET_SECRET: SECRET });
      await proc.exited();
      expect(proc.output.text).not.toContain(SECRET);
    }
  });
});
