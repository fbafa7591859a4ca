// The admin API as the page sees it: the JSON shapes and one fetch helper. Every call is made
// with the page's cookie; a 401 anywhere means the login form, so it is one error type.

export interface AgentEntry {
  id: string;
  session: string;
  connected_since: string;
  streams: number;
  bytes_in: number;
  bytes_out: number;
}

export interface Summary {
  id: string;
  agent: string;
  method: string;
  path: string;
  status: number;
  /** The gateway's own X-Tunnel-Error code when it answered itself, else "". */
  error: string;
  client_ip: string;
  started_at: string;
  duration_ms: number;
  request_bytes: number;
  response_bytes: number;
  replay_of: string | null;
}

export interface Body {
  size: number;
  captured: number;
  truncated: boolean;
  encoding: "utf8" | "base64";
  data: string;
}

export type HeaderList = [string, string][];

export interface Detail extends Summary {
  request: { headers: HeaderList; body: Body };
  response: { headers: HeaderList; body: Body } | null;
  /** Milliseconds from the start: the whole request at the agent, the response head, its last byte. */
  timing: { sent_ms: number | null; head_ms: number | null; last_byte_ms: number | null };
}

/** What an edited replay changes; absent fields keep the original's. */
export interface ReplayChanges {
  method?: string;
  path?: string;
  headers?: HeaderList;
  body?: string;
}

export class Unauthorized extends Error {}

/** An answer other than the one expected, with the API's own `error` text when it gave one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, { ...init, credentials: "same-origin" });
  if (res.status === 401) throw new Unauthorized();
  const payload = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new ApiError(res.status, payload.error ?? `${path} answered ${res.status}`);
  return payload;
}

export const api = {
  /** Resolves when the page may read the API; Unauthorized when it must log in first. */
  session: () => call<{ auth: "none" | "ok" }>("/api/session"),
  agents: () => call<AgentEntry[]>("/api/agents"),
  requests: (query: URLSearchParams) =>
    call<{ requests: Summary[] }>(`/api/requests?${query}`).then((r) => r.requests),
  detail: (id: string) => call<Detail>(`/api/requests/${encodeURIComponent(id)}`),
  replay: (id: string, changes: ReplayChanges = {}) =>
    call<{ id: string }>(`/api/requests/${encodeURIComponent(id)}/replay`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(changes),
    }).then((r) => r.id),
};

export const FEED_URL = "/api/requests/feed";
