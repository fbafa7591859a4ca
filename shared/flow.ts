// Per-stream credit windows (DESIGN §3), the same on both sides of the tunnel: a sender spends
// credit as it sends body bytes and stops its source at zero; the receiver hands credit back only
// once the bytes have left it (client socket accepted them, local socket written).

/** Send side: body bytes the peer still accepts for one stream. */
export class SendWindow {
  #available: number;
  #wake: (() => void) | null = null;
  #closed = false;

  constructor(initial: number) {
    this.#available = initial;
  }

  get available(): number {
    return this.#closed ? 0 : this.#available;
  }

  /** Spends credit for bytes about to be sent; never more than `available`. */
  spend(bytes: number): void {
    this.#available -= bytes;
  }

  grant(bytes: number): void {
    this.#available += bytes;
    this.#notify();
  }

  /** Resolves once credit is available or the window is closed. */
  whenOpen(): Promise<void> {
    if (this.#available > 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  /** Listener for push-style sources that resume on credit (one at a time). */
  onOpen(wake: () => void): void {
    this.#wake = wake;
  }

  close(): void {
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    if (wake === null || (this.#available <= 0 && !this.#closed)) return;
    this.#wake = null;
    wake();
  }
}

/**
 * Receive side: counts bytes buffered for one stream and batches credit returns, so that a
 * window update costs one small frame per quarter window rather than one per chunk.
 */
export class ReceiveWindow {
  #buffered = 0;
  #unacknowledged = 0;
  readonly #window: number;
  readonly #sendUpdate: (increment: number) => void;

  constructor(window: number, sendUpdate: (increment: number) => void) {
    this.#window = window;
    this.#sendUpdate = sendUpdate;
  }

  /** Bytes received and not yet handed on: bounded by the window for a well-behaved peer. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Records arriving bytes; false when the peer sent beyond the credit it was given. */
  receive(bytes: number): boolean {
    this.#buffered += bytes;
    return this.#buffered + this.#unacknowledged <= this.#window;
  }

  /** The bytes left this side; returns credit once enough has accumulated. */
  handedOn(bytes: number): void {
    this.#buffered -= bytes;
    this.#unacknowledged += bytes;
    if (this.#unacknowledged >= this.#window / 4) this.flush();
  }

  flush(): void {
    if (this.#unacknowledged === 0) return;
    const increment = this.#unacknowledged;
    this.#unacknowledged = 0;
    this.#sendUpdate(increment);
  }
}
