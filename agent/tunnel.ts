// One authenticated WebSocket to the gateway on the agent: the multiplexer (shared/mux.ts) plus
// what only the agent does: it takes the streams the gateway opens, answers GoAway, and keeps
// its own heartbeat against a gateway that goes silent.
import { type ControlMessage, TunnelClose_Reason } from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import { type Frame, Multiplexer } from "../shared/mux.ts";
import { encodeClose } from "../shared/protocol.ts";
import type { TcpService } from "./config.ts";
import { type ExchangeCarrier, LocalExchange } from "./exchange.ts";
import { GatewaySocket } from "./gateway-socket.ts";
import type { LocalPool } from "./local-pool.ts";
import { LocalTcpStream, type TcpStreamCarrier } from "./tcp-stream.ts";
import { LocalWebSocket, type WebSocketCarrier } from "./websocket-bridge.ts";

/** A gateway silent for this many heartbeat intervals is considered gone (DESIGN §5). */
const MISSED_HEARTBEATS = 3;

type AgentStream = LocalExchange | LocalWebSocket | LocalTcpStream;

export class TunnelConnection
  extends Multiplexer<AgentStream>
  implements ExchangeCarrier, WebSocketCarrier, TcpStreamCarrier
{
  /** HTTP exchanges open: a graceful stop waits for these, not for WebSockets. */
  httpStreams = 0;
  readonly #socket: GatewaySocket;
  readonly #pool: LocalPool;
  /** The only TCP services a stream may reach (--tcp). */
  readonly #tcpServices: readonly TcpService[];
  /** Names this connection in log lines when the agent holds several ("connection 2/3: "). */
  readonly #prefix: string;
  #heartbeat: Timer | undefined;
  #goingAway = false;
  #draining = false;
  #idleWaiters: (() => void)[] = [];
  /** Called once when the gateway announces it is going away (GoAway). */
  onGoAway: (() => void) | undefined;

  constructor(
    ws: WebSocket,
    pool: LocalPool,
    version: number,
    prefix = "",
    tcpServices: readonly TcpService[] = [],
  ) {
    const socket = new GatewaySocket(ws);
    super(socket, version);
    this.#socket = socket;
    this.#pool = pool;
    this.#prefix = prefix;
    this.#tcpServices = tcpServices;
  }

  protected get logName(): string {
    return `${this.#prefix}gateway connection`;
  }

  get goingAway(): boolean {
    return this.#goingAway;
  }

  /** Pings now (a first round-trip time for the windows) and every interval after. */
  startHeartbeat(intervalMs: number): void {
    this.ping();
    this.#heartbeat = setInterval(() => {
      const silence = Date.now() - this.lastSeen;
      if (silence > intervalMs * MISSED_HEARTBEATS) {
        log.warn(`${this.#prefix}gateway silent for ${Math.round(silence / 1000)} s, reconnecting`);
        this.#socket.terminate();
        return;
      }
      this.ping();
    }, intervalMs);
  }

  forget(stream: AgentStream): void {
    if (this.streams.get(stream.streamId) !== stream) return;
    this.streams.delete(stream.streamId);
    if (!(stream instanceof LocalExchange)) return;
    this.httpStreams--;
    if (this.httpStreams === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  /** Resolves once no exchange is left (for a graceful stop or a GOAWAY). */
  whenIdle(): Promise<void> {
    if (this.httpStreams === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Closes with 1000 when no request is running here, so the gateway may send again whatever this
   * connection has not answered (none of it ran); 1001 when a request would be cut.
   */
  closeFinished(reason: string): void {
    this.close(this.httpStreams === 0 ? 1000 : 1001, reason);
  }

  /** The agent is stopping: new requests are refused (503 at the gateway), running ones go on. */
  drain(): void {
    this.#draining = true;
  }

  protected dispatchRole(frame: Frame): boolean {
    if (frame.case !== "request") return false;
    const request = frame.value;
    if (this.#draining) {
      this.send(encodeClose(request.streamId, TunnelClose_Reason.SHUTTING_DOWN, "agent stopping"));
      return true;
    }
    if (request.tcpService !== "") {
      const stream = new LocalTcpStream(this, request);
      this.streams.set(stream.streamId, stream);
      stream.start(request.tcpService, this.#tcpServices);
      return true;
    }
    if (request.websocket) {
      const bridge = new LocalWebSocket(this, this.#pool.authority, request);
      this.streams.set(bridge.streamId, bridge);
      bridge.start();
      return true;
    }
    const exchange = new LocalExchange(this, this.#pool, request);
    this.streams.set(exchange.streamId, exchange);
    this.httpStreams++;
    exchange.start().catch((error: unknown) => this.faultStream(exchange, error));
    return true;
  }

  protected override onControl(control: ControlMessage): boolean {
    if (control.kind.case !== "goAway") return false;
    log.info(`${this.#prefix}gateway is going away: ${control.kind.value.message}`);
    this.#goingAway = true;
    this.onGoAway?.();
    return true;
  }

  protected sendStreamFault(streamId: number): void {
    this.send(encodeClose(streamId, TunnelClose_Reason.LOCAL_ERROR, "agent error"));
  }

  /** The socket closed: every stream still running is dropped. */
  protected onClosed(): void {
    clearInterval(this.#heartbeat);
    for (const stream of [...this.streams.values()]) {
      if (stream instanceof LocalWebSocket) stream.cancel(1001, "tunnel closed");
      else stream.cancel();
    }
    this.#socket.dispose();
  }
}
