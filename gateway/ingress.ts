// The public HTTP port: route each request by its Host header to an agent session, open a
// stream for it, and answer on the tunnel's behalf when it cannot be forwarded.
import type { Server } from "bun";
import { endToEndHeaders } from "../shared/headers.ts";
import { log } from "../shared/log.ts";
import { encodeEnvelope, INITIAL_WINDOW, MAX_FRAME_PAYLOAD } from "../shared/protocol.ts";
import { ingressError } from "./errors.ts";
import type { GatewayStream } from "./inflight.ts";
import type { SessionRegistry } from "./sessions.ts";

export interface IngressOptions {
  hostname: string;
  port: number;
  domain: string;
  requestTimeoutMs: number;
  maxStreamsPerAgent: number;
  maxRequestBodyBytes: number;
  registry: SessionRegistry;
  /** Maps a Host header to an agent id, or null when the host is not ours. */
  route: (host: string | null) => string | null;
  accepting: () => boolean;
}

/** Headers the gateway sets itself; any copies the client sent are replaced, never trusted. */
const FORWARDING_HEADERS = new Set([
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-request-id",
]);

export function startIngress(options: IngressOptions): Server<undefined> {
  const server: Server<undefined> = Bun.serve({
    hostname: options.hostname,
    port: options.port,
    maxRequestBodySize: options.maxRequestBodyBytes,
    fetch: (req, srv) => forward(req, srv, options),
    error(error) {
      log.error(`ingress: ${error.message}`);
      return new Response("500 internal gateway error\n", { status: 500 });
    },
  });
  return server;
}

async function forward(req: Request, server: Server<undefined>, options: IngressOptions): Promise<Response> {
  if (!options.accepting()) return ingressError("gateway_shutting_down").toResponse();
  const host = req.headers.get("host");
  const agentId = options.route(host);
  if (agentId === null) return ingressError("unknown_host", host ?? "no Host header").toResponse();
  const session = options.registry.pick(agentId);
  if (!session) return ingressError("agent_not_connected", agentId).toResponse();
  if (session.streams.size >= options.maxStreamsPerAgent) {
    return ingressError("too_many_streams", `${options.maxStreamsPerAgent} in flight`).toResponse();
  }
  const contentLength = Number(req.headers.get("content-length") ?? Number.NaN);
  if (contentLength > options.maxRequestBodyBytes) return ingressError("payload_too_large").toResponse();

  // The tunnel enforces its own timeouts; Bun's idle timer would also cut quiet streams (SSE).
  server.timeout(req, 0);
  const stream = session.openStream({
    requestId: crypto.randomUUID(),
    sendWindow: INITIAL_WINDOW,
    receiveWindow: INITIAL_WINDOW,
    headTimeoutMs: options.requestTimeoutMs,
  });
  req.signal.addEventListener("abort", () => stream.cancel(), { once: true });

  const url = new URL(req.url);
  const headers = requestHeaders(req, server, host ?? "", stream.requestId);
  const inline = await inlineBody(req, contentLength);
  session.send(
    encodeEnvelope({
      case: "request",
      value: {
        streamId: stream.streamId,
        requestId: stream.requestId,
        method: req.method,
        path: url.pathname + url.search,
        headers,
        body: inline ?? new Uint8Array(0),
        endStream: inline !== null,
        window: INITIAL_WINDOW,
      },
    }),
  );
  if (inline === null && req.body) void stream.pumpRequestBody(req.body);
  const response = await stream.response;
  logExchange(req, agentId, stream, url.pathname);
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

function requestHeaders(
  req: Request,
  server: Server<undefined>,
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
  const proto = req.url.startsWith("https:") ? "https" : "http";
  headers.push(
    { name: "x-forwarded-for", value: clientIp },
    { name: "x-forwarded-host", value: host },
    { name: "x-forwarded-proto", value: proto },
    { name: "x-request-id", value: requestId },
  );
  return headers;
}

function logExchange(req: Request, agentId: string, stream: GatewayStream, path: string): void {
  const ms = (performance.now() - stream.startedAt).toFixed(1);
  log.debug(`${stream.requestId} ${agentId} ${req.method} ${path} ${stream.status} ${ms}ms`);
}
