// One line per request, written when its response is over (body included), so status, bytes and
// duration are final. In text format it is one preformatted string; the JSON fields object is built
// only when the logs are JSON lines.
import { isJsonLogging, log } from "../shared/log.ts";

/** One finished request, as the ingress reports it to the access log and the metrics. */
export interface Exchange {
  /** Empty when the gateway answered before opening a stream (404, 413, 503). */
  requestId: string;
  /** Empty when the host routes to no agent. */
  agentId: string;
  method: string;
  /** Without the query string, which may carry credentials. */
  path: string;
  status: number;
  /** Response-body bytes delivered to the client. */
  bytes: number;
  durationMs: number;
}

export function logExchange(e: Exchange): void {
  const ms = Math.round(e.durationMs * 10) / 10;
  const text = `${e.requestId || "-"} ${e.agentId || "-"} ${e.method} ${e.path} ${e.status} ${e.bytes}B ${ms}ms`;
  if (!isJsonLogging()) return log.info(text);
  log.info(text, {
    request_id: e.requestId,
    agent: e.agentId,
    method: e.method,
    path: e.path,
    status: e.status,
    bytes: e.bytes,
    duration_ms: ms,
  });
}
