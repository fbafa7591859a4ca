// One TCP stream on the agent: a connection to the local service the gateway named, opened only
// when that name is one the agent was started with (--tcp NAME=HOST:PORT), then relayed both ways
// (shared/tcp-relay.ts).
import type { Socket } from "bun";
import { TunnelClose_Reason, type TunnelData, type TunnelRequest } from "../shared/gen/tunnel_pb.ts";
import { encodeClose, encodeEnvelope, INITIAL_WINDOW } from "../shared/protocol.ts";
import { type TcpCarrier, TcpRelay } from "../shared/tcp-relay.ts";
import type { TcpService } from "./config.ts";
import { LOCAL_CONNECT_TIMEOUT_MS } from "./local-pool.ts";

/** What a TCP stream needs from the tunnel connection that carries it. */
export interface TcpStreamCarrier extends TcpCarrier {
  forget(stream: LocalTcpStream): void;
}

/** The TunnelResponse status that says the local connection is open. */
export const TCP_OPEN_STATUS = 200;

export class LocalTcpStream {
  readonly streamId: number;
  readonly #carrier: TcpStreamCarrier;
  readonly #relay: TcpRelay;
  #socket: Socket<LocalTcpStream> | null = null;
  #connectTimer: Timer | undefined;
  #finished = false;

  constructor(carrier: TcpStreamCarrier, request: TunnelRequest) {
    this.#carrier = carrier;
    this.streamId = request.streamId;
    this.#relay = new TcpRelay(carrier, {
      streamId: request.streamId,
      sendWindow: request.window,
      receiveWindow: INITIAL_WINDOW,
      onFinished: () => this.#finish(),
    });
  }

  /** Connects to the service `name` stands for; any other name is refused, nothing is dialled. */
  start(name: string, services: readonly TcpService[]): void {
    const service = services.find((s) => s.name === name);
    if (service === undefined) {
      return this.#refuse(TunnelClose_Reason.BAD_REQUEST, `this agent serves no TCP service named '${name}'`);
    }
    this.#connectTimer = setTimeout(
      () =>
        this.#refuse(
          TunnelClose_Reason.LOCAL_UNREACHABLE,
          `connect timed out after ${LOCAL_CONNECT_TIMEOUT_MS} ms`,
        ),
      LOCAL_CONNECT_TIMEOUT_MS,
    );
    Bun.connect<LocalTcpStream>({
      hostname: service.host,
      port: service.port,
      data: this,
      allowHalfOpen: true,
      socket: {
        open: (socket) => socket.data.#opened(socket),
        data: (socket, bytes) => socket.data.#relay.fromSocket(bytes),
        drain: (socket) => socket.data.#relay.drained(),
        end: (socket) => socket.data.#relay.socketEnded(),
        close: (socket, error) => socket.data.#closed(error),
        error: (socket, error) => socket.data.#closed(error),
      },
    }).catch((error: Error) => {
      this.#refuse(TunnelClose_Reason.LOCAL_UNREACHABLE, `${service.host}:${service.port}: ${error.message}`);
    });
  }

  // --- frames from the gateway ---------------------------------------------------------------

  onData(message: TunnelData): void {
    this.#relay.onData(message);
  }

  onWindowUpdate(increment: number): void {
    this.#relay.sendWindow.grant(increment);
  }

  onClose(message: Parameters<TcpRelay["onClose"]>[0]): void {
    this.#relay.onClose(message);
  }

  /** This side's code failed on the stream (the connection tells the gateway). */
  fault(): void {
    this.cancel();
  }

  /** The tunnel connection is gone: the local connection is cut. */
  cancel(): void {
    this.#relay.abort("tunnel closed");
  }

  // --- the local connection ------------------------------------------------------------------

  #opened(socket: Socket<LocalTcpStream>): void {
    clearTimeout(this.#connectTimer);
    if (this.#finished) return socket.terminate();
    this.#socket = socket;
    socket.setNoDelay(true);
    this.#carrier.send(
      encodeEnvelope({
        case: "response",
        value: { streamId: this.streamId, status: TCP_OPEN_STATUS, endStream: false, window: 0 },
      }),
    );
    this.#relay.attach(socket);
  }

  // A connect that failed is refused by start(); only an open connection's close reaches the relay.
  #closed(error: Error | undefined): void {
    if (this.#socket !== null) this.#relay.socketClosed(error?.message);
  }

  #refuse(reason: TunnelClose_Reason, message: string): void {
    if (this.#finished || this.#socket !== null) return;
    this.#carrier.send(encodeClose(this.streamId, reason, message));
    this.#relay.abort(message);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#connectTimer);
    this.#carrier.forget(this);
  }
}
