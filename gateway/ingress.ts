// The public HTTP port: route each request by its Host header to an agent session, open a
// stream for it, and answer on the tunnel's behalf when it cannot be forwarded.
import type { Server } from "bun";
import { encodeRequest } from "../shared/codec.ts";
import { endToEndHeaders } from "../shared/headers.ts";
import { log } from "../shared/log.ts";
import { INITIAL_WINDOW, MAX_FRAME_PAYLOAD } from "../shared/protocol.ts";
import type { Exchange } from "./access-log.ts";
import { canonicalAddress } from "./config.ts";
import { type IngressError, ingressError } from "./errors.ts";
import type { SessionRegistry } from "./sessions.ts";
import type { TlsPair } from "./tls.ts";
import {
  upgradeThroughTunnel,
  type WebSocketBridge,
  wantsWebSocket,
  websocketHandler,
} from "./websocket-bridge.ts";

export interface IngressOptions {
  /** Serve https:// with this certificate and key. */
  tls: TlsPair | undefined;
  /** Canonical addresses of front proxies whose X-Forwarded-* headers are kept. */
  trustedProxies: ReadonlySet<string>;
  hostname: string;
  port: number;
  domain: string;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  maxStreamsPerAgent: number;
  maxRequestBodyBytes: number;
  registry: SessionRegistry;
  /** Maps a Host header to an agent id, or null when the host is not ours. */
  route: (host: string | null) => string | null;
  accepting: () => boolean;
  /** Told of every request once its response is over: the access log and the metrics. */
  observe: (exchange: Exchange) => void;
}

/** Headers the gateway sets itself; copies sent by anyone but a trusted proxy are replaced. */
const FORWARDING_HEADERS = new Set([
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-request-id",
]);

export function startIngress(options: IngressOptions): Server<WebSocketBridge> {
  const server: Server<WebSocketBridge> = Bun.serve({
    ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
    hostname: options.hostname,
    port: options.port,
    maxRequestBodySize: options.maxRequestBodyBytes,
    fetch: (req, srv) => forward(req, srv, options),
    websocket: websocketHandler,
    error(error) {
      log.error(`ingress: ${error.message}`);
      return new Response("500 internal gateway error\n", { status: 500 });
    },
  });
  return server;
}

async function forward(
  req: Request,
  server: Server<WebSocketBridge>,
  options: IngressOptions,
): Promise<Response | undefined> {
  const startedAt = performance.now();
  const refuse = (error: IngressError, agentId = "") => answered(req, agentId, error, startedAt, options);
  if (!options.accepting()) return refuse(ingressError("gateway_shutting_down"));
  const host = req.headers.get("host");
  const agentId = options.route(host);
  if (agentId === null) return refuse(ingressError("unknown_host", host ?? "no Host header"));
  const session = options.registry.pick(agentId);
  if (!session) return refuse(ingressError("agent_not_connected", agentId), agentId);
  // WebSocket streams hold a window each way too: they count against the same limit.
  if (session.streams.size >= options.maxStreamsPerAgent) {
    return refuse(ingressError("too_many_streams", `${options.maxStreamsPerAgent} in flight`), agentId);
  }
  const contentLength = Number(req.headers.get("content-length") ?? Number.NaN);
  if (contentLength > options.maxRequestBodyBytes) return refuse(ingressError("payload_too_large"), agentId);

  // The tunnel enforces its own timeouts; Bun's idle timer would also cut quiet streams (SSE).
  server.timeout(req, 0);
  if (wantsWebSocket(req)) {
    const requestId = crypto.randomUUID();
    const headers = requestHeaders(req, server, options, host ?? "", requestId);
    return upgradeThroughTunnel(req, server, session, { requestId, headers }, options.requestTimeoutMs);
  }
  const stream = session.openStream({
    requestId: crypto.randomUUID(),
    sendWindow: INITIAL_WINDOW,
    receiveWindow: INITIAL_WINDOW,
    headTimeoutMs: options.requestTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
  });
  req.signal.addEventListener("abort", () => stream.cancel(), { once: true });

  const url = new URL(req.url);
  stream.onFinished = (done) => {
    // Once the stream is over, what is left for the client sits in Bun's buffers: Bun's own
    // timer takes over again, so a client that stopped reading does not hold it for ever.
    restoreSendTimeout(server, req, options.idleTimeoutMs);
    options.observe({
      requestId: done.requestId,
      agentId,
      method: req.method,
      path: url.pathname,
      status: done.status,
      bytes: done.bytesOut,
      durationMs: performance.now() - startedAt,
    });
  };
  const headers = requestHeaders(req, server, options, host ?? "", stream.requestId);
  let inline: Uint8Array | null | typeof CUT;
  try {
    // Nothing is sent yet, so the response settles only if the stream is cut meanwhile (the
    // client went away, or sent nothing for --idle-timeout); the read is then abandoned.
    const reading = inlineBody(req, contentLength);
    reading.catch(() => {});
    inline = await Promise.race([reading, stream.response.then((): typeof CUT => CUT)]);
  } catch (error) {
    stream.fail(ingressError("client_error", (error as Error)?.message ?? String(error)));
    return stream.response;
  }
  if (inline === CUT || stream.finished) return stream.response;
  session.send(
    encodeRequest({
      streamId: stream.streamId,
      requestId: stream.requestId,
      method: req.method,
      path: url.pathname + url.search,
      headers,
      body: inline ?? undefined,
      endStream: inline !== null,
      window: INITIAL_WINDOW,
    }),
  );
  if (inline !== null) stream.requestSent();
  else if (req.body) void stream.pumpRequestBody(req.body);
  return stream.response;
}

const CUT: unique symbol = Symbol("cut");

/**
 * How long a client may leave a finished response unread (nginx's `send_timeout` is 60 s), and
 * its connection idle between requests: never longer than `--idle-timeout`, at most Bun's 255.
 */
const SEND_TIMEOUT_S = 60;

function restoreSendTimeout(server: Server<WebSocketBridge>, req: Request, idleTimeoutMs: number): void {
  const limit = idleTimeoutMs === 0 ? SEND_TIMEOUT_S : Math.ceil(idleTimeoutMs / 1000);
  try {
    server.timeout(req, Math.min(SEND_TIMEOUT_S, limit));
  } catch {
    // The client is already gone: nothing left to time out.
  }
}

/** An answer the gateway gives itself, before any stream is opened. */
function answered(
  req: Request,
  agentId: string,
  error: IngressError,
  startedAt: number,
  options: IngressOptions,
): Response {
  const response = error.toResponse();
  options.observe({
    requestId: "",
    agentId,
    method: req.method,
    path: new URL(req.url).pathname,
    status: error.status,
    bytes: 0,
    durationMs: performance.now() - startedAt,
  });
  return response;
}

/**
 * A small body that has fully arrived rides inside the TunnelRequest itself, so a small
 * exchange costs one WebSocket message each way. Returns null when the body must stream.
 */
async function inlineBody(req: Request, contentLength: number): Promise<Uint8Array | null> {
  if (!req.body) return new Uint8Array(0);
  if (contentLength >= 0 && contentLength <= MAX_FRAME_PAYLOAD)
    return new Uint8Array(await req.arrayBuffer());
  return null;
}

type HeaderInit = { name: string; value: string };

// Behind a trusted front proxy the client's address is appended to the proxy's X-Forwarded-For
// and its X-Forwarded-Host/-Proto are kept; from anyone else all three are replaced.
function requestHeaders(
  req: Request,
  server: Server<WebSocketBridge>,
  options: IngressOptions,
  host: string,
  requestId: string,
): HeaderInit[] {
  const pairs = endToEndHeaders(req.headers as unknown as Iterable<[string, string]>);
  const headers: HeaderInit[] = [];
  for (const [name, value] of pairs) {
    if (FORWARDING_HEADERS.has(name)) continue;
    headers.push({ name, value });
  }
  const clientIp = server.requestIP(req)?.address ?? "";
  const trusted = options.trustedProxies.has(canonicalAddress(clientIp));
  const sent = (name: string) => (trusted ? req.headers.get(name) : null);
  const priorFor = sent("x-forwarded-for");
  headers.push(
    { name: "x-forwarded-for", value: priorFor ? `${priorFor}, ${clientIp}` : clientIp },
    { name: "x-forwarded-host", value: sent("x-forwarded-host") ?? host },
    { name: "x-forwarded-proto", value: sent("x-forwarded-proto") ?? (options.tls ? "https" : "http") },
    { name: "x-request-id", value: requestId },
  );
  return headers;
}
