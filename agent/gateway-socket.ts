// The agent's client WebSocket as the multiplexer writes to it. Bun's client has neither cork
// nor a drain event: batching is the multiplexer's (several frames in one message), and
// backpressure is `bufferedAmount`, polled while it is high (writable-watch.ts).
import type { MuxTransport } from "../shared/mux.ts";
import { WritableWatch } from "./writable-watch.ts";

export class GatewaySocket implements MuxTransport {
  readonly #ws: WebSocket;
  readonly #writable: WritableWatch;

  constructor(ws: WebSocket) {
    this.#ws = ws;
    this.#writable = new WritableWatch(() => ws);
  }

  get congested(): boolean {
    return this.#writable.congested;
  }

  // The client buffers whatever it cannot send yet; a closing socket drops it, and its close
  // event ends the connection anyway.
  write(message: Uint8Array): boolean {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(message);
    return true;
  }

  cork(writes: () => void): void {
    writes();
  }

  onWritable(wake: () => void): void {
    if (this.congested) this.#writable.onWritable(wake);
    else wake();
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason);
  }

  /** Drops the connection without a close handshake: the gateway went silent. */
  terminate(): void {
    this.#ws.terminate();
  }

  /** The socket is gone: nobody waits for it any more. */
  dispose(): void {
    this.#writable.wakeAll();
  }
}
