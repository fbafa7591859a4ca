// The inspector's HTTP API on the admin listener: the list (newest first, filtered), one exchange
// in full, a live feed (server-sent events) and replay; plus the page's login and logout. Every
// /api/ route asks for the admin token when one is configured.
import type { AdminAuth } from "./admin-auth.ts";
import type { CapturedBody, CapturedExchange, HeadersKept } from "./capture.ts";
import type { Inspector } from "./inspector.ts";

/** What a replay may change; absent fields keep the original's. */
export interface ReplayChanges {
  method?: string;
  path?: string;
  headers?: [string, string][];
  body?: string;
  body_base64?: string;
}

export interface InspectorApi {
  inspector: Inspector | undefined;
  auth: AdminAuth;
  /** Sends the exchange again through the ingress; resolves with the new exchange's id. */
  replay: (exchange: CapturedExchange, changes: ReplayChanges) => Promise<string>;
}

/** A feed with nothing to say still writes this often, so that idle timers keep it open. */
const FEED_KEEPALIVE_MS = 5_000;

/** Answers the routes it owns, or undefined to let the admin listener try its others. */
export async function answerInspector(
  api: InspectorApi,
  req: Request,
  path: string,
): Promise<Response | undefined> {
  if (req.method === "POST" && path === "/login") return api.auth.login(req);
  if (req.method === "POST" && path === "/logout") return api.auth.logout();
  if (!path.startsWith("/api/")) return undefined;
  if (!api.auth.authorized(req)) return Response.json({ error: "unauthorized" }, { status: 401 });
  if (path === "/api/session") return Response.json({ auth: api.auth.required ? "ok" : "none" });
  if (path !== "/api/requests" && !path.startsWith("/api/requests/")) return undefined;
  const inspector = api.inspector;
  if (!inspector) return Response.json({ error: "the inspector is off (--inspect 0)" }, { status: 404 });
  if (path === "/api/requests") return list(inspector, new URL(req.url).searchParams);
  if (path === "/api/requests/feed") return feed(inspector, req.signal);
  const [, , , id, action] = path.split("/");
  const exchange = inspector.ring.get(decodeURIComponent(id ?? ""));
  if (!exchange) return Response.json({ error: "not found" }, { status: 404 });
  if (action === undefined && req.method === "GET") return Response.json(detail(exchange));
  if (action === "replay" && req.method === "POST") return replay(api, withOwnBody(exchange), req);
  return Response.json({ error: "not found" }, { status: 404 });
}

function list(inspector: Inspector, query: URLSearchParams): Response {
  const agent = query.get("agent");
  const method = query.get("method")?.toUpperCase();
  const path = query.get("path");
  const status = query.get("status");
  const limit = Number(query.get("limit") ?? Number.POSITIVE_INFINITY);
  const requests = [];
  for (const exchange of inspector.ring.list()) {
    if (requests.length >= limit) break;
    if (agent && exchange.agent !== agent) continue;
    if (method && exchange.method !== method) continue;
    if (path && !exchange.path.includes(path)) continue;
    if (status && !statusMatches(exchange.status, status)) continue;
    requests.push(summary(exchange));
  }
  return Response.json({ requests });
}

/** `404` matches one status, `5xx` a class. */
function statusMatches(status: number, filter: string): boolean {
  const cls = /^([1-5])xx$/i.exec(filter);
  if (cls) return Math.floor(status / 100) === Number(cls[1]);
  return String(status) === filter;
}

function feed(inspector: Inspector, signal: AbortSignal): Response {
  const encoder = new TextEncoder();
  let stop = () => {};
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const send = (text: string) => {
        try {
          controller.enqueue(encoder.encode(text));
        } catch {
          stop();
        }
      };
      const unfollow = inspector.ring.follow((exchange) => {
        send(`event: request\ndata: ${JSON.stringify(summary(exchange))}\n\n`);
      });
      const keepalive = setInterval(() => send(": keepalive\n\n"), FEED_KEEPALIVE_MS);
      stop = () => {
        unfollow();
        clearInterval(keepalive);
      };
      signal.addEventListener("abort", stop, { once: true });
      send(": following\n\n");
    },
    cancel() {
      stop();
    },
  });
  return new Response(stream, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
  });
}

async function replay(api: InspectorApi, exchange: CapturedExchange, req: Request): Promise<Response> {
  let changes: ReplayChanges = {};
  const text = await req.text();
  if (text.trim() !== "") {
    try {
      changes = JSON.parse(text) as ReplayChanges;
    } catch {
      return Response.json({ error: "the body must be JSON" }, { status: 400 });
    }
  }
  const keepsBody = changes.body === undefined && changes.body_base64 === undefined;
  if (keepsBody && exchange.requestBody.size > exchange.requestBody.bytes.byteLength) {
    return Response.json(
      { error: "the request body was not kept in full (--inspect-body); send one with the replay" },
      { status: 409 },
    );
  }
  try {
    return Response.json({ id: await api.replay(exchange, changes) }, { status: 201 });
  } catch (error) {
    return Response.json({ error: error instanceof Error ? error.message : String(error) }, { status: 502 });
  }
}

/**
 * The exchange with a copy of its request body, taken before anything is awaited: the kept bytes
 * lie in a pooled buffer that another exchange reuses once this one leaves the ring.
 */
function withOwnBody(exchange: CapturedExchange): CapturedExchange {
  const body = exchange.requestBody;
  return { ...exchange, requestBody: { size: body.size, bytes: body.bytes.slice(), pooled: null } };
}

export function summary(exchange: CapturedExchange) {
  return {
    id: exchange.id,
    agent: exchange.agent,
    method: exchange.method,
    path: exchange.path,
    status: exchange.status,
    error: exchange.error,
    client_ip: exchange.clientIp,
    started_at: new Date(exchange.startedAt).toISOString(),
    duration_ms: Math.round(exchange.durationMs * 10) / 10,
    request_bytes: exchange.requestBody.size,
    response_bytes: exchange.responseBody.size,
    replay_of: exchange.replayOf,
  };
}

function detail(exchange: CapturedExchange) {
  return {
    ...summary(exchange),
    request: { headers: exchange.requestHeaders, body: body(exchange.requestBody) },
    response: exchange.responseHeaders
      ? { headers: pairs(exchange.responseHeaders), body: body(exchange.responseBody) }
      : null,
    timing: {
      sent_ms: round(exchange.sentMs),
      head_ms: round(exchange.headMs),
      last_byte_ms: round(exchange.lastByteMs),
    },
  };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function body(captured: CapturedBody) {
  const { bytes } = captured;
  const common = {
    size: captured.size,
    captured: bytes.byteLength,
    truncated: captured.size > bytes.byteLength,
  };
  try {
    return { ...common, encoding: "utf8", data: utf8.decode(bytes) };
  } catch {
    return { ...common, encoding: "base64", data: Buffer.from(bytes).toString("base64") };
  }
}

function pairs(headers: HeadersKept): [string, string][] {
  if (headers instanceof Headers) return [...headers];
  return headers.map((h) => [h.name, h.value]);
}

function round(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 10) / 10;
}
