// Every answer the gateway gives on its own behalf: one code, one status, one short text.
// The code also travels in the X-Tunnel-Error header so clients can tell the tunnel's errors
// from the service's own.

const ANSWERS = {
  unknown_host: [404, "no tunnel is configured for this host"],
  agent_not_connected: [404, "no agent is connected for this host"],
  agent_gone: [502, "the agent disconnected and did not reconnect in time"],
  cluster_unavailable: [
    502,
    "the agent is not connected to this gateway and the cluster directory is unavailable",
  ],
  peer_error: [502, "the gateway holding the agent's connection failed"],
  too_many_held: [503, "too many requests are waiting for agents to reconnect; retry shortly"],
  bad_request: [400, "the request was refused by the agent as malformed"],
  unauthorized: [401, "this tunnel asks for a user name and password"],
  forbidden: [403, "this tunnel does not accept requests from your address"],
  rate_limited: [429, "too many requests; retry later"],
  client_error: [400, "the request body could not be read"],
  client_closed: [499, "the client closed the connection before the response"],
  payload_too_large: [413, "the request body exceeds the gateway's limit"],
  agent_disconnected: [502, "the agent disconnected before the response completed"],
  local_unreachable: [502, "the agent could not reach its local service"],
  local_error: [502, "the local service closed the connection or sent an invalid response"],
  agent_error: [502, "the agent broke the tunnel protocol"],
  gateway_error: [500, "the gateway failed while handling this request"],
  timeout: [504, "the local service did not answer in time"],
  local_timeout: [504, "the agent timed out waiting for its local service"],
  too_many_streams: [503, "the agent is handling too many requests; retry shortly"],
  agent_shutting_down: [503, "the agent is shutting down; retry shortly"],
  gateway_shutting_down: [503, "the gateway is shutting down; retry shortly"],
} as const satisfies Record<string, readonly [number, string]>;

export type IngressErrorCode = keyof typeof ANSWERS;

export class IngressError extends Error {
  override name = "IngressError";
  readonly code: IngressErrorCode;
  readonly status: number;
  /** What the answer needs besides the code: `WWW-Authenticate` for 401, `Retry-After` for 429. */
  readonly headers: Record<string, string> | undefined;

  constructor(code: IngressErrorCode, detail?: string, headers?: Record<string, string>) {
    const [status, text] = ANSWERS[code];
    super(detail ? `${text}: ${detail}` : text);
    this.code = code;
    this.status = status;
    this.headers = headers;
  }

  /** The one-line body of the answer. */
  get text(): string {
    return `${this.status} ${this.message}\n`;
  }

  toResponse(requestId?: string): Response {
    const headers: Record<string, string> = {
      ...this.headers,
      "content-type": "text/plain; charset=utf-8",
      "x-tunnel-error": this.code,
    };
    if (requestId) headers["x-request-id"] = requestId;
    if (this.status === 503) headers["retry-after"] = "1";
    return new Response(this.text, { status: this.status, headers });
  }
}

export function ingressError(
  code: IngressErrorCode,
  detail?: string,
  headers?: Record<string, string>,
): IngressError {
  return new IngressError(code, detail, headers);
}
