// Local services the agent forwards to in tests: an ordinary HTTP server, and a raw TCP one
// for response framings that Bun.serve never produces (close-delimited, hand-made chunked).
import type { Server, ServerWebSocket, TCPSocketListener } from "bun";

/** Deterministic bytes, so both ends can compute what a body must be. */
export function patternBytes(size: number, seed = 7): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A loopback TCP server always has a port; Bun types it optional for unix sockets. */
export type OnPort<T> = T & { readonly port: number };

/**
 * The echo service; `hangsSeen` counts requests to /hang it has received (and never answers),
 * `lookalikesSeen` those to /lookalike, answered with a header the gateway uses for its own errors.
 */
export type EchoService = OnPort<Server<undefined>> & {
  readonly hangsSeen: number;
  readonly lookalikesSeen: number;
};

export function startEchoService(): EchoService {
  let hangs = 0;
  let lookalikes = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const [, route, arg] = url.pathname.split("/");
      switch (route) {
        case "status":
          return new Response(Number(arg) === 204 || Number(arg) === 304 ? null : `status ${arg}`, {
            status: Number(arg),
          });
        case "cookies": {
          const headers = new Headers();
          headers.append("set-cookie", "a=1; Path=/");
          headers.append("set-cookie", "b=2; Path=/");
          headers.append("x-multi", "one");
          headers.append("x-multi", "two");
          return new Response("cookies", { headers });
        }
        case "bytes":
          return new Response(patternBytes(Number(arg)), {
            headers: { "content-type": "application/octet-stream" },
          });
        case "gzip":
          // Already compressed, as a service that serves .gz files does: it must arrive as sent.
          return new Response(Bun.gzipSync(patternBytes(Number(arg)) as Uint8Array<ArrayBuffer>), {
            headers: { "content-type": "application/octet-stream", "content-encoding": "gzip" },
          });
        case "upload": {
          const body = new Uint8Array(await req.arrayBuffer());
          return Response.json({
            length: body.byteLength,
            sha256: new Bun.CryptoHasher("sha256").update(body).digest("hex"),
          });
        }
        case "lookalike":
          lookalikes++;
          return new Response("from the service", {
            status: 404,
            headers: { "x-tunnel-error": "agent_not_connected" },
          });
        case "drip":
          // `arg` chunks of 1 KiB, 100 ms apart: a download that stays in flight for a while.
          return new Response(dripBody(Number(arg)), {
            headers: { "content-type": "application/octet-stream" },
          });
        case "hang":
          hangs++;
          return new Promise<Response>(() => {});
        default: {
          const body = await req.text();
          const headers: [string, string][] = [];
          req.headers.forEach((value, name) => {
            headers.push([name, value]);
          });
          return Response.json(
            { method: req.method, path: url.pathname, query: url.search, headers, body },
            { headers: { "x-echo": "1" } },
          );
        }
      }
    },
  });
  Object.defineProperty(server, "lookalikesSeen", { get: () => lookalikes });
  return Object.defineProperty(server, "hangsSeen", { get: () => hangs }) as EchoService;
}

function dripBody(chunks: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    async pull(controller) {
      if (sent > 0) await Bun.sleep(100);
      controller.enqueue(patternBytes(1024, sent));
      if (++sent === chunks) controller.close();
    },
  });
}

/**
 * A TCP server that answers every request with the same raw bytes, then optionally closes
 * (close-delimited bodies end only when the connection does).
 */
export function startRawService(
  response: string | Uint8Array,
  closeAfter: boolean,
): TCPSocketListener<undefined> {
  return Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, bytes) {
        // Answer once the request head is complete; tests send bodiless requests.
        if (!Buffer.from(bytes).includes("\r\n\r\n")) return;
        socket.write(response);
        if (closeAfter) socket.end();
      },
    },
  });
}

/** A port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface TcpProxy {
  readonly port: number;
  /** Every current connection goes silent both ways, with no FIN and no RST: a dead network. */
  blackhole(): void;
  stop(): void;
}

/** A TCP relay to `targetPort`, to cut a live connection the way a failing network does. */
export function startTcpProxy(targetPort: number): TcpProxy {
  type Pair = { upstream: Bun.Socket<undefined> | null; pending: Uint8Array[]; silent: boolean };
  const pairs = new Set<Pair>();
  const listener = Bun.listen<Pair>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        const pair: Pair = { upstream: null, pending: [], silent: false };
        client.data = pair;
        pairs.add(pair);
        void Bun.connect({
          hostname: "127.0.0.1",
          port: targetPort,
          socket: {
            data(_upstream, bytes) {
              if (!pair.silent) client.write(bytes);
            },
            close() {
              if (!pair.silent) client.end();
            },
          },
        }).then(
          (upstream) => {
            pair.upstream = upstream;
            for (const bytes of pair.pending.splice(0)) upstream.write(bytes);
          },
          () => client.end(),
        );
      },
      data(client, bytes) {
        const pair = client.data;
        if (pair.silent) return;
        if (pair.upstream === null) pair.pending.push(bytes.slice());
        else pair.upstream.write(bytes);
      },
      close(client) {
        if (!client.data.silent) client.data.upstream?.end();
      },
    },
  });
  return {
    port: listener.port,
    blackhole() {
      for (const pair of pairs) pair.silent = true;
      pairs.clear();
    },
    stop() {
      listener.stop(true);
    },
  };
}

export interface WebSocketService {
  readonly port: number;
  /** The handshake headers of the socket opened on `path`. */
  handshake(path: string): Promise<Headers>;
  /** How the socket opened on `path` was closed, as the service saw it. */
  closed(path: string): Promise<{ code: number; reason: string }>;
  /** SHA-256 of each binary message the socket on `path` received. */
  received(path: string): string[];
  /** Bytes the socket on `path` has handed to Bun so far while flooding. */
  flooded(path: string): number;
  stop(): void;
}

/**
 * A WebSocket service: every message is echoed as it came (text as text, binary as binary); the
 * text "close <code> <reason>" makes the service close with that code; "chat.v2" is accepted
 * as subprotocol when offered; "flood <n>" sends n 1 MiB binary messages as fast as the socket
 * takes them (waiting for drain); `/refuse` answers 403 instead of upgrading.
 */
export function startWebSocketService(): WebSocketService {
  type Socket = { path: string; drained: (() => void) | null };
  const handshakes = new Map<string, PromiseWithResolvers<Headers>>();
  const closes = new Map<string, PromiseWithResolvers<{ code: number; reason: string }>>();
  const hashes = new Map<string, string[]>();
  const flooded = new Map<string, number>();
  const flood = async (ws: ServerWebSocket<Socket>, count: number) => {
    const chunk = patternBytes(1024 * 1024, 3);
    for (let i = 0; i < count; i++) {
      const result = ws.sendBinary(chunk);
      if (result === 0) return;
      flooded.set(ws.data.path, (flooded.get(ws.data.path) ?? 0) + chunk.byteLength);
      if (result === -1) await new Promise<void>((resolve) => (ws.data.drained = resolve));
    }
  };
  const entry = <T>(map: Map<string, PromiseWithResolvers<T>>, path: string) => {
    const found = map.get(path) ?? Promise.withResolvers<T>();
    map.set(path, found);
    return found;
  };
  const server = Bun.serve<Socket>({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch(req, srv) {
      const path = new URL(req.url).pathname;
      if (path === "/refuse") return new Response("no WebSockets here", { status: 403 });
      const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
      const headers: Record<string, string> = offered.includes("chat.v2")
        ? { "sec-websocket-protocol": "chat.v2" }
        : {};
      entry(handshakes, path).resolve(req.headers);
      if (srv.upgrade(req, { data: { path, drained: null }, headers })) return undefined;
      return new Response("upgrade failed", { status: 400 });
    },
    websocket: {
      message(ws, message) {
        if (typeof message === "string") {
          const close = /^close (\d+) (.*)$/.exec(message);
          if (close) return ws.close(Number(close[1]), close[2]);
          const count = /^flood (\d+)$/.exec(message)?.[1];
          if (count !== undefined) return void flood(ws, Number(count));
          ws.sendText(message);
          return;
        }
        const list = hashes.get(ws.data.path) ?? [];
        list.push(new Bun.CryptoHasher("sha256").update(message).digest("hex"));
        hashes.set(ws.data.path, list);
        ws.sendBinary(message);
      },
      drain(ws) {
        const wake = ws.data.drained;
        ws.data.drained = null;
        wake?.();
      },
      close(ws, code, reason) {
        ws.data.drained?.();
        entry(closes, ws.data.path).resolve({ code, reason });
      },
    },
  });
  return {
    port: server.port as number,
    handshake: (path) => entry(handshakes, path).promise,
    closed: (path) => entry(closes, path).promise,
    received: (path) => hashes.get(path) ?? [],
    flooded: (path) => flooded.get(path) ?? 0,
    stop: () => server.stop(true),
  };
}
