// A request for an agent held by another gateway goes to that gateway's ingress as plain HTTP,
// signed with the cluster secret. The owner treats it as its own request (same limits, same
// timeouts, the same stream to the agent); bodies stream both ways under TCP's flow control on
// the hop and the tunnel's credit windows beyond it.
import type { Peer } from "./directory.ts";
import { ABSENT_HEADER, ADDED_BY_FETCH, HOP_HEADER, signHop } from "./hop.ts";

export interface Hop {
  secret: string;
  /** This gateway's id, named in the hop header and in the owner's access log. */
  gatewayId: string;
}

export interface ForwardInit {
  agentId: string;
  requestId: string;
  method: string;
  pathAndQuery: string;
  /** The Host the client sent, by which the owner routes too. */
  host: string;
  /** End-to-end request headers with X-Forwarded-* and X-Request-Id already set. */
  headers: { name: string; value: string }[];
  /** A buffered body may be sent again to another peer; a stream may not. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  signal: AbortSignal;
}

/**
 * The peer failed before its response began: either no connection could be made (`delivered`
 * false, nothing reached it), or the connection broke after the request was sent (it may have
 * reached the agent, so only an idempotent request may be sent again).
 */
export class PeerUnreachable extends Error {
  override name = "PeerUnreachable";
  readonly delivered: boolean;

  constructor(message: string, delivered: boolean) {
    super(message);
    this.delivered = delivered;
  }
}

// Errors that mean no connection was made, so the peer cannot have seen the request.
const NOT_CONNECTED = new Set([
  "ECONNREFUSED",
  "ConnectionRefused",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "FailedToOpenSocket",
]);

/** The owner's response, streamed; PeerUnreachable when the peer failed before answering. */
export async function forwardToPeer(peer: Peer, hop: Hop, init: ForwardInit): Promise<Response> {
  const headers = hopHeaders(hop, init);
  try {
    return await fetch(peer.url + init.pathAndQuery, {
      method: init.method,
      headers,
      body: init.body,
      duplex: "half",
      redirect: "manual",
      // The body goes to the client as the service encoded it.
      decompress: false,
      signal: init.signal,
    } as RequestInit);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (init.signal.aborted || typeof code !== "string") throw error;
    throw new PeerUnreachable(`${peer.url}: ${code}`, !NOT_CONNECTED.has(code));
  }
}

/** The headers of the hop: the client's, the Host, the signature, and what fetch must not add. */
export function hopHeaders(hop: Hop, init: Omit<ForwardInit, "body" | "signal">): Headers {
  const headers = new Headers();
  for (const { name, value } of init.headers) headers.append(name, value);
  headers.set("host", init.host);
  const absent = ADDED_BY_FETCH.filter((name) => !headers.has(name));
  if (absent.length > 0) headers.set(ABSENT_HEADER, absent.join(","));
  const signed = {
    agentId: init.agentId,
    requestId: init.requestId,
    method: init.method,
    path: init.pathAndQuery,
  };
  headers.set(HOP_HEADER, signHop(hop.secret, hop.gatewayId, signed, Date.now()));
  return headers;
}
