// A replay is a new request to this gateway's own ingress, so that it takes exactly the path a
// client's request takes (routing, limits, a peer in a cluster) and is captured like one. The
// replay header, signed with a key of this process, names the exchange it repeats.
import type { ReplayChanges } from "./api.ts";
import type { CapturedExchange } from "./capture.ts";
import { REPLAY_HEADER } from "./inspector.ts";

/** The gateway sets these again itself; the replayed request must not carry the old ones. */
const SET_BY_GATEWAY = new Set([
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-request-id",
  "content-length",
]);

/** How long a replay waits for the response head; the rest of the body drains on its own. */
const REPLAY_TIMEOUT_MS = 30_000;

export async function replayThroughIngress(
  ingressOrigin: string,
  replayHeader: string,
  exchange: CapturedExchange,
  changes: ReplayChanges,
): Promise<string> {
  const headers = new Headers();
  for (const [name, value] of changes.headers ?? exchange.requestHeaders) {
    if (!SET_BY_GATEWAY.has(name.toLowerCase())) headers.append(name, value);
  }
  const host = exchange.requestHeaders.find(([name]) => name === "host")?.[1];
  if (host && !headers.has("host")) headers.set("host", host);
  headers.set(REPLAY_HEADER, replayHeader);
  const method = (changes.method ?? exchange.method).toUpperCase();
  const path = changes.path ?? exchange.path;
  if (!path.startsWith("/")) throw new Error(`the path must start with /, got '${path}'`);
  const response = await fetch(`${ingressOrigin}${path}`, {
    method,
    headers,
    body: method === "GET" || method === "HEAD" ? null : replayBody(exchange, changes),
    redirect: "manual",
    decompress: false,
    signal: AbortSignal.timeout(REPLAY_TIMEOUT_MS),
    // The ingress's own certificate names the public domain, not the address dialled here.
    tls: { rejectUnauthorized: false },
  } as RequestInit);
  // Read to the end, so that the exchange completes as a client's would.
  void response.arrayBuffer().catch(() => {});
  const id = response.headers.get("x-request-id");
  if (!id) throw new Error(`the ingress answered ${response.status} without a request id`);
  return id;
}

function replayBody(exchange: CapturedExchange, changes: ReplayChanges): Uint8Array {
  if (changes.body_base64 !== undefined) return new Uint8Array(Buffer.from(changes.body_base64, "base64"));
  if (changes.body !== undefined) return new TextEncoder().encode(changes.body);
  return exchange.requestBody.bytes;
}
