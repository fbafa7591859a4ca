// A hand-driven agent for attacking the real gateway: it authenticates like the real agent
// (signConnect over a raw WebSocket) and then sends whatever the test tells it to.
import { newNonce, PROTOCOL_VERSION, signConnect } from "../shared/auth.ts";
import { forEachFrame } from "../shared/batch.ts";
import type { Connected, ControlMessage, TunnelClose, TunnelRequest } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope, type EnvelopeInit, encodeEnvelope } from "../shared/protocol.ts";
import { DEFAULT_TOKEN, type TokenSpec } from "./harness.ts";

/** Opens a WebSocket to `url` and resolves once it is open (or rejects when it fails). */
export function openSocket(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false } as Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error(`cannot open ${url}`));
  });
}

/** The ConnectRequest the real agent would send, signed with `token`'s secret. */
export function connectFrame(
  agentId: string,
  token: TokenSpec = DEFAULT_TOKEN,
  protocolVersion = PROTOCOL_VERSION,
): Uint8Array {
  const fields = {
    agentId,
    token: token.token,
    timestampMs: BigInt(Date.now()),
    nonce: newNonce(),
    protocolVersion,
  };
  return encodeEnvelope({
    case: "connect",
    value: { ...fields, signature: signConnect(token.secret, fields), agentVersion: "rogue" },
  });
}

export class RogueAgent {
  readonly requests: TunnelRequest[] = [];
  readonly closes: TunnelClose[] = [];
  readonly controls: ControlMessage["kind"][] = [];
  /** Every WebSocket message as it arrived, to check how frames were packed. */
  readonly messages: Uint8Array[] = [];
  readonly closed: Promise<CloseEvent>;
  #waiters: (() => void)[] = [];

  private constructor(
    readonly ws: WebSocket,
    readonly connected: Connected,
  ) {
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", resolve);
    });
    ws.addEventListener("message", (event) => {
      const message = new Uint8Array(event.data as ArrayBuffer);
      this.messages.push(message);
      forEachFrame(message, (frame) => this.#receive(decodeEnvelope(frame)));
    });
  }

  #receive(message: ReturnType<typeof decodeEnvelope>): void {
    if (message.case === "request") this.requests.push(message.value);
    if (message.case === "close") this.closes.push(message.value);
    if (message.case === "control") this.controls.push(message.value.kind);
    if (message.case === "control" && message.value.kind.case === "ping") {
      this.send({
        case: "control",
        value: { kind: { case: "pong", value: { seq: message.value.kind.value.seq } } },
      });
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Authenticates as `agentId` and resolves once the gateway answered Connected. */
  static async connect(
    wsUrl: string,
    agentId: string,
    protocolVersion = PROTOCOL_VERSION,
  ): Promise<RogueAgent> {
    const ws = await openSocket(wsUrl);
    const connected = new Promise<Connected>((resolve, reject) => {
      ws.onmessage = (event) => {
        const message = decodeEnvelope(new Uint8Array(event.data as ArrayBuffer));
        if (message.case === "control" && message.value.kind.case === "connected") {
          resolve(message.value.kind.value);
        } else reject(new Error(`not connected: ${message.case}`));
      };
    });
    ws.send(connectFrame(agentId, DEFAULT_TOKEN, protocolVersion));
    const answer = await connected;
    ws.onmessage = null;
    return new RogueAgent(ws, answer);
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(message: EnvelopeInit): void {
    this.ws.send(encodeEnvelope(message));
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** The next TunnelRequest the gateway sent that the test has not taken yet. */
  async nextRequest(timeoutMs = 10_000): Promise<TunnelRequest> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length === 0) {
      if (Date.now() > deadline) throw new Error("no TunnelRequest arrived");
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
    return this.requests.shift() as TunnelRequest;
  }

  /** Answers a request the way a well-behaved agent would. */
  answer(streamId: number, status: number, body: string): void {
    this.send({
      case: "response",
      value: {
        streamId,
        status,
        headers: [{ name: "content-type", value: "text/plain" }],
        body: new TextEncoder().encode(body),
        endStream: true,
      },
    });
  }

  close(): void {
    this.ws.close();
  }
}
