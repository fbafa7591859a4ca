// A WebSocket for an agent held by another gateway: this gateway opens a WebSocket to the owner's
// ingress (signed like any forwarded request), upgrades the client once the owner's side is open,
// and relays messages and closes between the two sockets.
import type { Server } from "bun";
import { ingressError } from "../errors.ts";
import type { IngressSocket, IngressSocketData } from "../websocket-bridge.ts";
import type { Peer } from "./directory.ts";
import { type ForwardInit, type Hop, hopHeaders, PeerUnreachable } from "./forward.ts";

/** Above this many bytes queued towards the owner, the client's socket is paused. */
const HIGH_WATER = 1 << 20;
/** While paused, how often the owner's socket is checked for room again. */
const RESUME_POLL_MS = 10;
/** A client that reads nothing while the owner keeps sending is cut beyond this backlog. */
const MAX_CLIENT_BACKLOG = 16 << 20;

type UpgradeInit = Omit<ForwardInit, "body" | "signal" | "method">;

/**
 * Opens the owner's side, then upgrades the client with the subprotocol the service chose.
 * Resolves undefined once upgraded, or with the answer to give instead.
 */
export async function upgradeThroughPeer(
  req: Request,
  server: Server<IngressSocketData>,
  peer: Peer,
  hop: Hop,
  init: UpgradeInit,
  timeoutMs: number,
): Promise<Response | undefined> {
  const headers = hopHeaders(hop, {
    ...init,
    method: "GET",
    // The WebSocket client makes its own handshake; only the offered subprotocols carry over.
    headers: init.headers.filter(({ name }) => !name.startsWith("sec-websocket-")),
  });
  const offered = req.headers.get("sec-websocket-protocol");
  const protocols = offered ? offered.split(",").map((p) => p.trim()) : [];
  const url = `${peer.url.replace(/^http/, "ws")}${init.pathAndQuery}`;
  const upstream = new WebSocket(url, {
    headers,
    protocols,
    perMessageDeflate: false,
  } as Bun.WebSocketOptions);
  upstream.binaryType = "arraybuffer";
  const bridge = new PeerWebSocket(upstream);
  const opened = await bridge.opened(timeoutMs);
  if (opened !== "open") {
    if (opened === "refused") throw new PeerUnreachable(`${peer.url}: connection refused`, false);
    return ingressError("peer_error", opened).toResponse(init.requestId);
  }
  const answer: Record<string, string> = { "x-request-id": init.requestId };
  if (upstream.protocol) answer["sec-websocket-protocol"] = upstream.protocol;
  if (server.upgrade(req, { data: bridge, headers: answer })) return undefined;
  upstream.close(1001, "client upgrade failed");
  return ingressError("bad_request", "not a valid WebSocket upgrade").toResponse(init.requestId);
}

export class PeerWebSocket implements IngressSocketData {
  readonly #upstream: WebSocket;
  #client: IngressSocket | null = null;
  /** What the owner sent before the client's socket was attached. */
  #early: (string | ArrayBuffer)[] = [];
  #resumeTimer: Timer | undefined;
  #clientClosed = false;
  /** Set when the owner closed before the client's socket was attached. */
  #ownerClose: { code: number; reason: string } | null = null;

  constructor(upstream: WebSocket) {
    this.#upstream = upstream;
    upstream.addEventListener("message", (event) => this.#fromOwner(event.data as string | ArrayBuffer));
    upstream.addEventListener("close", (event) => this.#ownerClosed(event.code, event.reason));
  }

  /** "open", "refused" when no connection was made, or why the handshake failed. */
  opened(timeoutMs: number): Promise<string> {
    const upstream = this.#upstream;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        upstream.close();
        resolve("the owning gateway did not open the WebSocket in time");
      }, timeoutMs);
      const settle = (result: string) => {
        clearTimeout(timer);
        resolve(result);
      };
      upstream.addEventListener("open", () => settle("open"), { once: true });
      upstream.addEventListener(
        "error",
        (event) => {
          const message = String((event as ErrorEvent).message ?? "");
          settle(
            /Failed to connect/i.test(message)
              ? "refused"
              : `the owning gateway refused the WebSocket: ${message}`,
          );
        },
        { once: true },
      );
    });
  }

  attach(ws: IngressSocket): void {
    this.#client = ws;
    for (const message of this.#early.splice(0)) this.#toClient(message);
    if (this.#ownerClose) this.#ownerClosed(this.#ownerClose.code, this.#ownerClose.reason);
  }

  forward(message: string | Uint8Array): void {
    if (this.#upstream.readyState !== WebSocket.OPEN) return;
    this.#upstream.send(message);
    if (this.#upstream.bufferedAmount > HIGH_WATER && this.#resumeTimer === undefined) this.#pauseClient();
  }

  drained(): void {}

  closedByClient(code: number, reason: string): void {
    this.#clientClosed = true;
    this.#client = null;
    clearInterval(this.#resumeTimer);
    // 1005 and 1006 may not be sent in a close frame; the owner hears a plain going-away.
    const sendable =
      code === 1000 ||
      (code >= 3000 && code <= 4999) ||
      (code >= 1001 && code <= 1014 && code !== 1005 && code !== 1006);
    this.#upstream.close(sendable ? code : 1001, reason);
  }

  #pauseClient(): void {
    this.#client?.pause();
    this.#resumeTimer = setInterval(() => {
      if (this.#upstream.bufferedAmount > HIGH_WATER / 2) return;
      clearInterval(this.#resumeTimer);
      this.#resumeTimer = undefined;
      this.#client?.resume();
    }, RESUME_POLL_MS);
  }

  #fromOwner(data: string | ArrayBuffer): void {
    if (this.#client === null) {
      if (!this.#clientClosed) this.#early.push(data);
      return;
    }
    this.#toClient(data);
  }

  #toClient(data: string | ArrayBuffer): void {
    const client = this.#client;
    if (client === null) return;
    if (typeof data === "string") client.sendText(data);
    else client.sendBinary(new Uint8Array(data));
    if (client.getBufferedAmount() > MAX_CLIENT_BACKLOG) {
      client.close(1008, "client is not reading");
      this.#upstream.close(1001, "client is not reading");
    }
  }

  #ownerClosed(code: number, reason: string): void {
    clearInterval(this.#resumeTimer);
    const client = this.#client;
    if (client === null) {
      this.#ownerClose = { code, reason };
      return;
    }
    if (code === 1006) client.terminate();
    else client.close(code === 1005 ? 1000 : code, reason);
  }
}
