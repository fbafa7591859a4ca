// One line per request, written when its response is over (body included), so status, bytes and
// duration are final. In text format it is one preformatted string; the JSON fields object is built
// only when the logs are JSON lines.
import { isJsonLogging, LOG_LEVELS, log, writeLines } from "../shared/log.ts";
import type { TcpExchange } from "./tcp/ports.ts";

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
  /** The gateway that forwarded this request here, in a cluster. */
  via?: string;
  /** The gateway this request was forwarded to, in a cluster. */
  to?: string;
}

/**
 * The access log bypasses consola: formatting a line through it cost a tenth of the gateway's CPU
 * per small request. Lines of one event-loop turn go out in one write, in the same shape as
 * consola's lines (text on stderr, or the JSON reporter's objects on stdout).
 */
export function logExchange(e: Exchange): void {
  if (log.level < LOG_LEVELS.info) return;
  const ms = Math.round(e.durationMs * 10) / 10;
  const hop = e.via ? ` via=${e.via}` : e.to ? ` to=${e.to}` : "";
  const text = `${e.requestId || "-"} ${e.agentId || "-"} ${e.method} ${e.path} ${e.status} ${e.bytes}B ${ms}ms${hop}`;
  if (!isJsonLogging()) return queue(textLines, text);
  queueJson(text, {
    request_id: e.requestId,
    agent: e.agentId,
    method: e.method,
    path: e.path,
    status: e.status,
    bytes: e.bytes,
    duration_ms: ms,
    ...(e.via ? { via: e.via } : {}),
    ...(e.to ? { to: e.to } : {}),
  });
}

/** One line per TCP connection on a [[tcp]] port, once it closed: bytes each way and why it ended. */
export function logTcp(e: TcpExchange): void {
  if (log.level < LOG_LEVELS.info) return;
  const ms = Math.round(e.durationMs * 10) / 10;
  const outcome = e.error === undefined ? "closed" : `error=${JSON.stringify(e.error)}`;
  const text = `tcp ${e.agentId}/${e.service} ${e.clientIp} in=${e.bytesIn}B out=${e.bytesOut}B ${ms}ms ${outcome}`;
  if (!isJsonLogging()) return queue(textLines, text);
  queueJson(text, {
    agent: e.agentId,
    service: e.service,
    client_ip: e.clientIp,
    bytes_in: e.bytesIn,
    bytes_out: e.bytesOut,
    duration_ms: ms,
    ...(e.error === undefined ? {} : { error: e.error }),
  });
}

const textLines: string[] = [];
const jsonLines: string[] = [];
let flushScheduled = false;

/** A line as consola's JSON reporter writes it: time, level and message first. */
function queueJson(text: string, fields: Record<string, unknown>): void {
  queue(jsonLines, JSON.stringify({ time: new Date().toISOString(), level: "info", msg: text, ...fields }));
}

function queue(lines: string[], line: string): void {
  lines.push(line);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flush);
}

function flush(): void {
  flushScheduled = false;
  if (textLines.length > 0) writeLines("stderr", textLines.splice(0).join("\n"));
  if (jsonLines.length > 0) writeLines("stdout", jsonLines.splice(0).join("\n"));
}
