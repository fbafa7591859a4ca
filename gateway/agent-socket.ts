// The server side of an agent's WebSocket as the multiplexer writes to it: frames of one turn
// corked into one system call, and Bun's own backpressure (send() -1 until drain, 0 lost).
import type { ServerWebSocket } from "bun";
import type { MuxTransport } from "../shared/mux.ts";
import { DrainGate } from "./drain-gate.ts";

export class AgentSocket implements MuxTransport {
  readonly #ws: ServerWebSocket<unknown>;
  readonly #gate = new DrainGate();

  constructor(ws: ServerWebSocket<unknown>) {
    this.#ws = ws;
  }

  get congested(): boolean {
    return this.#gate.full;
  }

  // send() returns -1 when Bun queued the message (wait for drain) and 0 when it dropped it for
  // good: a dropped frame would corrupt a stream, so the caller closes the connection.
  write(message: Uint8Array): boolean {
    const result = this.#ws.send(message);
    this.#gate.sent(result);
    return result !== 0;
  }

  cork(writes: () => void): void {
    this.#ws.cork(writes);
  }

  onWritable(wake: () => void): void {
    this.#gate.onDrain(wake);
  }

  /** Bun's drain event, or the socket closed: whoever waits may write again. */
  drained(): void {
    this.#gate.drained();
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason);
  }
}
