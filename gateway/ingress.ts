// The public HTTP port: route each request by its Host header to an agent session, open a
// stream for it, and answer on the tunnel's behalf when it cannot be forwarded.
import type { Server, TLSOptions } from "bun";
import { encodeRequest } from "../shared/codec.ts";
import { endToEndHeaders } from "../shared/headers.ts";
import { log } from "../shared/log.ts";
import { INITIAL_WINDOW, MAX_FRAME_PAYLOAD } from "../shared/protocol.ts";
import type { CidrList } from "./access/cidr.ts";
import type { AccessControl } from "./access/policy.ts";
import type { Exchange } from "./access-log.ts";
import type { Hop } from "./cluster/forward.ts";
import { ABSENT_HEADER, HOP_HEADER, verifyHop } from "./cluster/hop.ts";
import { type IngressError, ingressError } from "./errors.ts";
import { bodyToForward, forwardThroughPeer, TRY_ANOTHER } from "./ingress-peer.ts";
import { type Inspector, REPLAY_HEADER } from "./inspect/inspector.ts";
import type { Locator, Target } from "./locate.ts";
import { RotatingServer } from "./rotating-server.ts";
import type { AgentSession } from "./session.ts";
import type { SessionRegistry } from "./sessions.ts";
import {
  type IngressSocketData,
  upgradeThroughTunnel,
  wantsWebSocket,
  websocketHandler,
} from "./websocket-bridge.ts";

export interface IngressOptions {
  /** Serve https:// with these certificates (by SNI); undefined for plain http://. */
  tls: TLSOptions[] | undefined;
  /** The certificates may change while the gateway runs (rotate). */
  rotates: boolean;
  /** Front proxies whose X-Forwarded-* headers are kept. */
  trustedProxies: CidrList;
  /** Per-agent access rules, checked before a stream is opened. */
  access: AccessControl;
  hostname: string;
  port: number;
  domain: string;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  maxStreamsPerAgent: number;
  maxRequestBodyBytes: number;
  registry: SessionRegistry;
  /** Finds a peer or holds the request when no local session serves the agent. */
  locator: Locator;
  /** Set in a cluster: signs requests forwarded to peers and checks those forwarded here. */
  hop: Hop | undefined;
  /** A peer that could not be reached at all, so the directory skips it for a while. */
  peerUnreachable: (peerId: string) => void;
  /** A peer no longer holds the agent the directory said it did: look again, not in the cache. */
  peerStale: (agentId: string) => void;
  /** Maps a Host header to an agent id, or null when the host is not ours. */
  route: (host: string | null) => string | null;
  accepting: () => boolean;
  /** Keeps the last exchanges for the admin API, when on. */
  inspector: Inspector | undefined;
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

/** Between gateways, or from the inspector to the ingress: never passed on to an agent. */
const INTERNAL_HEADERS = new Set([HOP_HEADER, ABSENT_HEADER, REPLAY_HEADER]);

export type IngressServer = Server<IngressSocketData>;

/** The ingress listener; `rotate` takes up new certificates without dropping a connection. */
export function startIngress(options: IngressOptions): RotatingServer<IngressSocketData> {
  const open = (tls: TLSOptions[] | undefined, port: number, reusePort: boolean) =>
    listen(options, tls, port, reusePort);
  const { tls, hostname, port, rotates } = options;
  return new RotatingServer({ name: "ingress", open, tls, hostname, port, rotates });
}

function listen(
  options: IngressOptions,
  tls: TLSOptions[] | undefined,
  port: number,
  reusePort: boolean,
): IngressServer {
  return Bun.serve({
    ...(tls ? { tls } : {}),
    hostname: options.hostname,
    port,
    reusePort,
    maxRequestBodySize: options.maxRequestBodyBytes,
    fetch: (req, srv) =>
      options.accepting() ? forward(req, srv, options) : lastOnConnection(req, srv, options),
    websocket: websocketHandler,
    error(error) {
      log.error(`ingress: ${error.message}`);
      return new Response("500 internal gateway error\n", { status: 500 });
    },
  });
}

async function forward(
  req: Request,
  server: IngressServer,
  options: IngressOptions,
): Promise<Response | undefined> {
  const startedAt = performance.now();
  const refuse = (error: IngressError, agentId = "") =>
    answered(req, agentId, error, startedAt, options, server);
  const host = req.headers.get("host");
  const agentId = options.route(host);
  if (agentId === null) return refuse(ingressError("unknown_host", host ?? "no Host header"));
  const via = fromPeer(req, agentId, options);
  // The first gateway of a cluster checked a forwarded request against its client's address.
  const refusal = via === null ? options.access.check(agentId, req, server) : undefined;
  if (refusal) {
    const error = await refusal;
    if (error) return refuse(error, agentId);
  }
  const session = options.registry.pick(agentId);
  // A held request may wait longer than Bun's idle timer; its own timers are the hold's.
  if (!session) server.timeout(req, 0);
  let target: Target = session ? { kind: "local", session } : await elsewhere(req, agentId, via, options);
  /** The body once read: a buffered one may go to a second peer or session. */
  let body: Uint8Array | ReadableStream<Uint8Array> | null | undefined;
  const contentLength = Number(req.headers.get("content-length") ?? Number.NaN);
  for (let attempt = 1; ; attempt++) {
    const last = attempt === MAX_ATTEMPTS;
    if (target.kind === "refused") {
      // The timer was turned off for a wait or a first attempt: the client's connection gets it back.
      restoreSendTimeout(server, req, options.idleTimeoutMs);
      return refuse(target.error, agentId);
    }
    if (target.kind === "peer") {
      if (body === undefined && !wantsWebSocket(req)) {
        try {
          body = await bodyToForward(req);
        } catch (error) {
          return refuse(ingressError("client_error", (error as Error)?.message ?? String(error)), agentId);
        }
      }
      const route = { agentId, host: host ?? "", peer: target.peer, startedAt, body: body ?? null };
      const answer = await forwardThroughPeer(req, server, route, peerContext(options));
      if (answer !== TRY_ANOTHER) return answer;
      if (last) return refuse(ingressError("peer_error", "no gateway took the request"), agentId);
    } else {
      const buffered = body instanceof ReadableStream ? undefined : body;
      const routed = {
        session: target.session,
        agentId,
        host: host ?? "",
        via,
        startedAt,
        contentLength,
        buffered,
        last,
      };
      const answer = await throughSession(req, server, options, routed);
      if (answer !== TRY_ANOTHER) return answer;
      body = routed.buffered;
    }
    target = await elsewhere(req, agentId, via, options);
  }
}

/** A request goes to another peer or session at most this many times in all. */
const MAX_ATTEMPTS = 3;

/** Where a request goes when no session here takes it: a peer, a held wait, or a refusal. */
async function elsewhere(
  req: Request,
  agentId: string,
  via: string | null,
  options: IngressOptions,
): Promise<Target> {
  const session = options.registry.pick(agentId);
  if (session) return { kind: "local", session };
  // A draining gateway still answers the requests that reach it, from its sessions while they
  // last; a request that would have to wait for an agent is better retried elsewhere.
  if (!options.accepting()) return { kind: "refused", error: ingressError("gateway_shutting_down") };
  // The forwarding gateway holds or looks elsewhere itself: a hop never goes on, nor waits here.
  if (via !== null) return { kind: "refused", error: ingressError("agent_not_connected", agentId) };
  return options.locator.locate(agentId, req.signal);
}

/** The limits a session applies, then the request through it. */
function throughSession(
  req: Request,
  server: IngressServer,
  options: IngressOptions,
  routed: Routed,
): Promise<Response | undefined | typeof TRY_ANOTHER> | Response {
  const refuse = (error: IngressError) =>
    answered(req, routed.agentId, error, routed.startedAt, options, server);
  if (routed.contentLength > options.maxRequestBodyBytes) return refuse(ingressError("payload_too_large"));
  // WebSocket streams hold a window each way too: they count against the same limit.
  if (routed.session.streams.size >= options.maxStreamsPerAgent) {
    return refuse(ingressError("too_many_streams", `${options.maxStreamsPerAgent} in flight`));
  }
  return throughTunnel(req, server, options, routed);
}

interface Routed {
  session: AgentSession;
  agentId: string;
  host: string;
  /** The gateway that forwarded the request here, or null for a client's own. */
  via: string | null;
  startedAt: number;
  contentLength: number;
  /**
   * The body, already read (null for none); undefined when it is still to be read from `req`.
   * Set once read inline, so that a request the agent declined can be sent again.
   */
  buffered: Uint8Array | null | undefined;
  /** No further attempt follows: a declined request is answered as it is. */
  last: boolean;
}

/** The sending gateway's id when the request is a valid hop from a peer, else null. */
function fromPeer(req: Request, agentId: string, options: IngressOptions): string | null {
  const header = req.headers.get(HOP_HEADER);
  if (header === null || options.hop === undefined) return null;
  const url = new URL(req.url);
  const request = {
    agentId,
    requestId: req.headers.get("x-request-id") ?? "",
    method: req.method,
    path: url.pathname + url.search,
  };
  return verifyHop(options.hop.secret, header, request, Date.now());
}

function peerContext(options: IngressOptions) {
  return {
    hop: options.hop as Hop,
    requestTimeoutMs: options.requestTimeoutMs,
    // Bun counts in whole seconds, up to 255; the owner cuts a stream idle for --idle-timeout.
    idleTimeoutS: options.idleTimeoutMs === 0 ? 0 : Math.min(255, Math.ceil(options.idleTimeoutMs / 1000)),
    headers: (req: Request, server: IngressServer, host: string, requestId: string) =>
      requestHeaders(req, server, options, host, requestId, null),
    observe: options.observe,
    unreachable: (peerId: string) => options.peerUnreachable(peerId),
    stale: (agentId: string) => options.peerStale(agentId),
  };
}

async function throughTunnel(
  req: Request,
  server: IngressServer,
  options: IngressOptions,
  routed: Routed,
): Promise<Response | undefined | typeof TRY_ANOTHER> {
  const { session, agentId, host, via, startedAt, contentLength, buffered } = routed;
  // A forwarded request keeps the id its first gateway gave it, so both access logs agree.
  const requestId = (via !== null && req.headers.get("x-request-id")) || crypto.randomUUID();
  // The tunnel enforces its own timeouts; Bun's idle timer would also cut quiet streams (SSE).
  server.timeout(req, 0);
  if (wantsWebSocket(req)) {
    const headers = requestHeaders(req, server, options, host, requestId, via);
    return upgradeThroughTunnel(req, server, session, { requestId, headers }, options.requestTimeoutMs);
  }
  const stream = session.openStream({
    requestId,
    sendWindow: INITIAL_WINDOW,
    receiveWindow: INITIAL_WINDOW,
    headTimeoutMs: options.requestTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
  });
  req.signal.addEventListener("abort", () => stream.cancel(), { once: true });

  const url = new URL(req.url);
  stream.onFinished = (done) => {
    // A request declined by a stopping agent is sent again: only its last answer is logged.
    if (done.declined && !routed.last && routed.buffered !== undefined) return;
    done.capture?.finish(done.status, done.error);
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
      ...(via !== null ? { via } : {}),
    });
  };
  const headers = requestHeaders(req, server, options, host, stream.requestId, via);
  if (options.inspector) {
    const path = url.pathname + url.search;
    stream.capture = beginCapture(options.inspector, req, { agentId, path, id: stream.requestId, headers });
  }
  let inline: Uint8Array | null | typeof CUT;
  try {
    // Nothing is sent yet, so the response settles only if the stream is cut meanwhile (the
    // client went away, or sent nothing for --idle-timeout); the read is then abandoned.
    const reading =
      buffered !== undefined
        ? Promise.resolve(buffered ?? new Uint8Array(0))
        : inlineBody(req, contentLength);
    reading.catch(() => {});
    inline = await Promise.race([reading, stream.response.then((): typeof CUT => CUT)]);
  } catch (error) {
    stream.fail(ingressError("client_error", (error as Error)?.message ?? String(error)));
    return stream.response;
  }
  if (inline === CUT || stream.finished) return stream.response;
  if (inline !== null) {
    routed.buffered = inline;
    stream.capture?.requestBody(inline);
  }
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
  const response = await stream.response;
  // Declined by an agent that is stopping, before it ran: another session (or the agent back
  // from its restart) takes it, when the body is still at hand.
  if (stream.declined && !routed.last && inline !== null) return TRY_ANOTHER;
  return response;
}

/**
 * While draining, each answer ends its connection, so the client's next request opens a new one,
 * which reaches the process that replaces this one.
 */
async function lastOnConnection(
  req: Request,
  server: IngressServer,
  options: IngressOptions,
): Promise<Response | undefined> {
  const response = await forward(req, server, options);
  try {
    response?.headers.set("connection", "close");
  } catch {
    // A peer's response has immutable headers: Bun closes the connection at the end anyway.
  }
  return response;
}

const CUT: unique symbol = Symbol("cut");

/**
 * How long a client may leave a finished response unread (nginx's `send_timeout` is 60 s), and
 * its connection idle between requests: never longer than `--idle-timeout`, at most Bun's 255.
 */
const SEND_TIMEOUT_S = 60;

function restoreSendTimeout(server: IngressServer, req: Request, idleTimeoutMs: number): void {
  const limit = idleTimeoutMs === 0 ? SEND_TIMEOUT_S : Math.ceil(idleTimeoutMs / 1000);
  try {
    server.timeout(req, Math.min(SEND_TIMEOUT_S, limit));
  } catch {
    // The client is already gone: nothing left to time out.
  }
}

/** The inspector's record of an exchange, from the request as the agent will see it. */
function beginCapture(
  inspector: Inspector,
  req: Request,
  exchange: { agentId: string; path: string; id: string; headers: HeaderInit[] },
) {
  const requestHeaders: [string, string][] = [];
  let forwardedFor = "";
  for (const { name, value } of exchange.headers) {
    requestHeaders.push([name, value]);
    if (name === "x-forwarded-for") forwardedFor = value;
  }
  const comma = forwardedFor.indexOf(",");
  return inspector.begin({
    id: exchange.id,
    agent: exchange.agentId,
    method: req.method,
    path: exchange.path,
    clientIp: (comma === -1 ? forwardedFor : forwardedFor.slice(0, comma)).trim(),
    requestHeaders,
    replayOf: inspector.replayOf(req.headers.get(REPLAY_HEADER)),
  });
}

/** An answer the gateway gives itself, before any stream is opened. */
function answered(
  req: Request,
  agentId: string,
  error: IngressError,
  startedAt: number,
  options: IngressOptions,
  server: IngressServer,
): Response {
  const response = error.toResponse();
  if (options.inspector) {
    const clientIp = server.requestIP(req)?.address ?? "";
    recordAnswer(options.inspector, req, { agentId, clientIp }, error, response);
  }
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

/** The gateway's own answer, in the inspector: the request as it came, and the answer. */
function recordAnswer(
  inspector: Inspector,
  req: Request,
  from: { agentId: string; clientIp: string },
  error: IngressError,
  response: Response,
) {
  const url = new URL(req.url);
  const start = {
    id: crypto.randomUUID(),
    agent: from.agentId,
    method: req.method,
    path: url.pathname + url.search,
    clientIp: from.clientIp,
    // The hop's signature and the replay mark are the gateway's, not the client's.
    requestHeaders: [...req.headers].filter(([name]) => !INTERNAL_HEADERS.has(name)) as [string, string][],
    replayOf: inspector.replayOf(req.headers.get(REPLAY_HEADER)),
  };
  inspector.answered(start, response, error.code, error.text);
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
// and its X-Forwarded-Host/-Proto are kept; from anyone else all three are replaced. A request
// a peer forwarded (`via`) carries the first gateway's headers, which stay as they are.
function requestHeaders(
  req: Request,
  server: IngressServer,
  options: IngressOptions,
  host: string,
  requestId: string,
  via: string | null,
): HeaderInit[] {
  const pairs = endToEndHeaders(req.headers as unknown as Iterable<[string, string]>);
  const absent = via !== null ? new Set(req.headers.get(ABSENT_HEADER)?.split(",")) : undefined;
  const headers: HeaderInit[] = [];
  for (const [name, value] of pairs) {
    if (INTERNAL_HEADERS.has(name) || absent?.has(name)) continue;
    if (via !== null || !FORWARDING_HEADERS.has(name)) headers.push({ name, value });
  }
  if (via !== null) return headers;
  const clientIp = server.requestIP(req)?.address ?? "";
  const trusted = options.trustedProxies.has(clientIp);
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
