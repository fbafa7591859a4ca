// Whether a request may be sent a second time after a connection broke under it: its method is
// idempotent (RFC 9110, 9.2.2), or the client marked it with an idempotency key. Go's HTTP
// client and nginx's proxy_next_upstream draw the same line; any other request is sent once.

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

const IDEMPOTENCY_KEYS = ["idempotency-key", "x-idempotency-key"];

/** `hasHeader` is asked with lowercase names. */
export function isReplayable(method: string, hasHeader: (name: string) => boolean): boolean {
  return IDEMPOTENT_METHODS.has(method) || IDEMPOTENCY_KEYS.some(hasHeader);
}
