// The ingress's side of forwarding: a request whose agent another gateway holds is sent there,
// and the owner's answer streams back to the client as if it were this gateway's own.
import { MAX_FRAME_PAYLOAD } from "../shared/protocol.ts";
import { isReplayable } from "../shared/replay.ts";
import type { Exchange } from "./access-log.ts";
import type { Peer } from "./cluster/directory.ts";
import { forwardToPeer, type Hop, PeerUnreachable } from "./cluster/forward.ts";
import { upgradeThroughPeer } from "./cluster/peer-websocket.ts";
import { ingressError } from "./errors.ts";
import type { IngressServer } from "./ingress.ts";
import { wantsWebSocket } from "./websocket-bridge.ts";

export interface PeerContext {
  hop: Hop;
  requestTimeoutMs: number;
  /** Bun's idle timer for a forwarded request's connection, in seconds; 0 for none. */
  idleTimeoutS: number;
  /** The request headers as this gateway would give them to an agent. */
  headers: (
    req: Request,
    server: IngressServer,
    host: string,
    requestId: string,
  ) => { name: string; value: string }[];
  observe: (exchange: Exchange) => void;
  unreachable: (peerId: string) => void;
  stale: (agentId: string) => void;
}

export interface PeerRoute {
  agentId: string;
  host: string;
  peer: Peer;
  startedAt: number;
  /** Read once, so that a buffered body can go to a second peer if the first cannot take it. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
}

/** A peer's answers that mean it did not run the request: the agent left it, or it is draining. */
const NOT_RUN = new Set(["agent_not_connected", "gateway_shutting_down"]);

/**
 * The peer refused the request itself, before any agent saw it. Only its own answers lack an
 * X-Request-Id (every answer through a stream has one): a service's X-Tunnel-Error header, copied
 * from somewhere upstream, must never make the request run again.
 */
function refusedByPeer(response: Response): boolean {
  return !response.headers.has("x-request-id") && NOT_RUN.has(response.headers.get("x-tunnel-error") ?? "");
}

/** The peer did not take the request, which may go to another one: nothing reached the client yet. */
export const TRY_ANOTHER: unique symbol = Symbol("try another peer");

/**
 * Forwards to the peer. A peer that cannot be reached is skipped for a while; when it did not see
 * the request (or says it no longer holds the agent) and the body can be sent again, the answer is
 * TRY_ANOTHER, else 502.
 */
export async function forwardThroughPeer(
  req: Request,
  server: IngressServer,
  route: PeerRoute,
  context: PeerContext,
): Promise<Response | undefined | typeof TRY_ANOTHER> {
  const requestId = crypto.randomUUID();
  const retryable = !(route.body instanceof ReadableStream);
  const url = new URL(req.url);
  const init = {
    agentId: route.agentId,
    requestId,
    host: route.host,
    pathAndQuery: url.pathname + url.search,
    headers: context.headers(req, server, route.host, requestId),
  };
  // The owner cuts a stream idle for --idle-timeout; here the connection stays open as long, so
  // that a quiet stream (SSE) lives on and an idle client still goes, as on the owner.
  server.timeout(req, context.idleTimeoutS);
  let response: Response | undefined;
  try {
    if (wantsWebSocket(req)) {
      response = await upgradeThroughPeer(
        req,
        server,
        route.peer,
        context.hop,
        init,
        context.requestTimeoutMs,
      );
    } else {
      response = await forwardToPeer(route.peer, context.hop, {
        ...init,
        method: req.method,
        body: route.body,
        signal: req.signal,
      });
      if (retryable && refusedByPeer(response)) {
        context.stale(route.agentId);
        return TRY_ANOTHER;
      }
    }
  } catch (error) {
    if (error instanceof PeerUnreachable) {
      // A peer that refused the connection is likely gone; one that reset it may just have
      // restarted a pooled connection, and is tried again next time.
      if (!error.delivered) context.unreachable(route.peer.id);
      const again = !error.delivered || isReplayable(req.method, (name) => req.headers.has(name));
      if (again && retryable && !req.signal.aborted) return TRY_ANOTHER;
    }
    const detail = error instanceof Error ? error.message : String(error);
    response = req.signal.aborted
      ? new Response(null, { status: 499 })
      : ingressError("peer_error", detail).toResponse(requestId);
  }
  context.observe({
    requestId,
    agentId: route.agentId,
    method: req.method,
    path: url.pathname,
    status: response?.status ?? 101,
    // The owner's access log has the exact count; here the declared length is all that is known
    // without copying the body through a counter.
    bytes: Number(response?.headers.get("content-length") ?? 0),
    durationMs: performance.now() - route.startedAt,
    to: route.peer.id,
  });
  return response;
}

/** A small body that has fully arrived is read first; a larger one streams through. */
export async function bodyToForward(req: Request): Promise<Uint8Array | ReadableStream<Uint8Array> | null> {
  if (!req.body) return null;
  const length = Number(req.headers.get("content-length") ?? Number.NaN);
  if (length >= 0 && length <= MAX_FRAME_PAYLOAD) return new Uint8Array(await req.arrayBuffer());
  return req.body;
}
