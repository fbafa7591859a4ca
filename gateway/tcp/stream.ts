// One TCP connection on a public port of the gateway and its stream to the agent: the agent is
// asked to connect to its named service; once it says the connection is open, the client's bytes
// flow under the agent's credit and the service's under ours (shared/tcp-relay.ts).
import type { Socket } from "bun";
import {
  type TunnelClose,
  TunnelClose_Reason,
  type TunnelData,
  type TunnelResponse,
} from "../../shared/gen/tunnel_pb.ts";
import { INITIAL_WINDOW } from "../../shared/protocol.ts";
import { type TcpCarrier, TcpRelay } from "../../shared/tcp-relay.ts";
import type { IngressError } from "../errors.ts";

/** What a TCP stream needs from the agent session that carries it. */
export interface TcpStreamCarrier extends TcpCarrier {
  forget(stream: TcpStream): void;
}

/** The TunnelResponse status by which the agent says the local connection is open. */
const OPEN_STATUS = 200;

/** How a stream ended, for the access log and the metrics. */
export interface TcpOutcome {
  /** Bytes from the client to the service. */
  bytesIn: number;
  /** Bytes from the service to the client. */
  bytesOut: number;
  /** Set when it did not end with both sides closing their half. */
  error?: string;
}

export class TcpStream {
  readonly streamId: number;
  readonly #relay: TcpRelay;
  readonly #onFinished: (outcome: TcpOutcome) => void;
  #error: string | undefined;
  #open = false;

  constructor(carrier: TcpStreamCarrier, streamId: number, onFinished: (outcome: TcpOutcome) => void) {
    this.streamId = streamId;
    this.#onFinished = onFinished;
    // No credit until the agent's connection is open: the client's bytes wait in its socket.
    this.#relay = new TcpRelay(carrier, {
      streamId,
      sendWindow: 0,
      receiveWindow: INITIAL_WINDOW,
      onFinished: (error) => {
        carrier.forget(this);
        const relay = this.#relay;
        this.#onFinished({ bytesIn: relay.bytesOut, bytesOut: relay.bytesIn, error: this.#error ?? error });
      },
    });
  }

  get logName(): string {
    return "tcp";
  }

  /** The client's socket: its events go to the relay from now on. */
  attach(socket: Socket<unknown>): void {
    this.#relay.attach(socket);
  }

  fromClient(bytes: Uint8Array): void {
    this.#relay.fromSocket(bytes);
  }

  clientEnded(): void {
    this.#relay.socketEnded();
  }

  clientClosed(error?: string): void {
    this.#relay.socketClosed(error);
  }

  drained(): void {
    this.#relay.drained();
  }

  // --- frames from the agent -----------------------------------------------------------------

  onResponse(message: TunnelResponse): void {
    if (this.#open || message.status !== OPEN_STATUS) {
      return this.#relay.fail(TunnelClose_Reason.PROTOCOL_ERROR, `unexpected response ${message.status}`);
    }
    this.#open = true;
    this.#relay.sendWindow.grant(INITIAL_WINDOW + message.window);
  }

  onData(message: TunnelData): void {
    if (!this.#open) return this.#relay.fail(TunnelClose_Reason.PROTOCOL_ERROR, "data before the response");
    this.#relay.onData(message);
  }

  onWindowUpdate(increment: number): void {
    this.#relay.sendWindow.grant(increment);
  }

  /** The agent refused the stream (unknown name, service unreachable) or ended it abnormally. */
  onClose(message: TunnelClose): void {
    this.#error ??= message.message || TunnelClose_Reason[message.reason];
    this.#relay.onClose(message);
  }

  fault(): void {
    this.#relay.abort("gateway error");
  }

  /** The session is gone: the client's connection is cut. */
  fail(error: IngressError): void {
    this.#relay.abort(error.message);
  }
}
