// One authenticated agent connection on the gateway: the multiplexer (shared/mux.ts) plus what
// only the gateway does: it opens the streams, and it takes the agents' response heads.
import type { ServerWebSocket } from "bun";
import { TunnelClose_Reason } from "../shared/gen/tunnel_pb.ts";
import { type Frame, Multiplexer } from "../shared/mux.ts";
import { encodeClose, encodeEnvelope, INITIAL_WINDOW } from "../shared/protocol.ts";
import { AgentSocket } from "./agent-socket.ts";
import { ingressError } from "./errors.ts";
import { GatewayStream, type StreamCarrier, type StreamInit } from "./inflight.ts";
import { type TcpOutcome, TcpStream, type TcpStreamCarrier } from "./tcp/stream.ts";
import { type BridgeCarrier, WebSocketBridge } from "./websocket-bridge.ts";

export interface SessionInfo {
  agentId: string;
  token: string;
  remoteAddress: string;
  agentVersion: string;
  /** The TCP services the agent said it serves; empty for agents before TCP tunnels. */
  tcpServices: readonly string[];
}

type SessionStream = GatewayStream | WebSocketBridge | TcpStream;

export class AgentSession
  extends Multiplexer<SessionStream>
  implements StreamCarrier, BridgeCarrier, TcpStreamCarrier
{
  readonly id = crypto.randomUUID();
  readonly info: SessionInfo;
  readonly connectedAt = Date.now();
  /** Set while a newer session for the same id waits to hear whether this one is still alive. */
  probeDeadline = 0;
  /** HTTP streams open: a draining gateway waits for these, not for WebSockets. */
  httpStreams = 0;
  /** Set once the agent refused a request because it is stopping: no new request goes to it. */
  stopping = false;
  /** Told once, when the session turns stopping (the registry). */
  onStopping: ((session: AgentSession) => void) | undefined;

  readonly #socket: AgentSocket;
  #nextStreamId = 1;
  readonly #onClosed: (session: AgentSession) => void;

  constructor(
    ws: ServerWebSocket<unknown>,
    info: SessionInfo,
    version: number,
    onClosed: (session: AgentSession) => void,
  ) {
    const socket = new AgentSocket(ws);
    super(socket, version);
    this.#socket = socket;
    this.info = info;
    this.#onClosed = onClosed;
  }

  protected get logName(): string {
    return `agent ${this.info.agentId} session ${this.id}`;
  }

  openStream(init: Omit<StreamInit, "streamId">): GatewayStream {
    const streamId = this.#allocateStreamId();
    const stream = new GatewayStream(this, { ...init, streamId });
    this.streams.set(streamId, stream);
    this.httpStreams++;
    return stream;
  }

  openWebSocket(requestId: string, handshakeTimeoutMs: number): WebSocketBridge {
    const streamId = this.#allocateStreamId();
    const bridge = new WebSocketBridge(this, streamId, requestId, handshakeTimeoutMs);
    this.streams.set(streamId, bridge);
    return bridge;
  }

  /** Asks the agent to connect to its TCP service `service`; the stream relays once it has. */
  openTcp(service: string, onFinished: (outcome: TcpOutcome) => void): TcpStream {
    const streamId = this.#allocateStreamId();
    const stream = new TcpStream(this, streamId, onFinished);
    this.streams.set(streamId, stream);
    this.send(
      encodeEnvelope({
        case: "request",
        value: { streamId, tcpService: service, window: INITIAL_WINDOW },
      }),
    );
    return stream;
  }

  forget(stream: SessionStream): void {
    if (this.streams.get(stream.streamId) !== stream) return;
    this.streams.delete(stream.streamId);
    if (stream instanceof GatewayStream) this.httpStreams--;
  }

  /** Any frame answers a probe: the session is alive. */
  override receive(message: Uint8Array): void {
    this.probeDeadline = 0;
    super.receive(message);
  }

  agentStopping(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.onStopping?.(this);
  }

  /** Called by the listener when Bun drains the socket. */
  drained(): void {
    this.#socket.drained();
  }

  sendGoAway(message: string): void {
    this.sendControl({ case: "goAway", value: { message } });
  }

  protected dispatchRole(frame: Frame): boolean {
    if (frame.case !== "response") return false;
    this.streams.get(frame.value.streamId)?.onResponse(frame.value);
    return true;
  }

  protected sendStreamFault(streamId: number): void {
    this.send(encodeClose(streamId, TunnelClose_Reason.PROTOCOL_ERROR, "gateway error"));
  }

  /**
   * Every stream still open ends with 502 (a broken body once its head went out). An agent that
   * closes with 1000 closes only once it runs no request: a stream it has not answered then never
   * reached it, and is declined (503, which the ingress turns into a retry).
   */
  protected onClosed(): void {
    this.#socket.drained();
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.httpStreams = 0;
    const error = ingressError(this.peerCloseCode === 1000 ? "agent_shutting_down" : "agent_disconnected");
    for (const stream of streams) stream.fail(error);
    this.#onClosed(this);
  }

  // Stream ids wrap within uint32 and skip ids still in use, so a long-lived session never
  // runs out and never reuses a live id.
  #allocateStreamId(): number {
    let id = this.#nextStreamId;
    while (this.streams.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    this.#nextStreamId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }
}
