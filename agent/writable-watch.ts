// Bun's client WebSocket has no drain event (DESIGN §9): a sender that finds one congested polls
// `bufferedAmount` until it falls back under the high-water mark, then wakes whoever waits.

/** Above this many unsent bytes a client WebSocket counts as congested: data waits. */
export const HIGH_WATER_BYTES = 1024 * 1024;

/** How often a congested socket re-checks `bufferedAmount`. */
const POLL_MS = 2;

export class WritableWatch {
  readonly #socket: () => WebSocket | null;
  #waiters: (() => void)[] = [];
  #timer: Timer | undefined;

  /** `socket` may change or be absent; a socket that is not open never counts as congested. */
  constructor(socket: () => WebSocket | null) {
    this.#socket = socket;
  }

  get congested(): boolean {
    const ws = this.#socket();
    return ws !== null && ws.readyState === WebSocket.OPEN && ws.bufferedAmount > HIGH_WATER_BYTES;
  }

  /** Calls `wake` once the socket is no longer congested (or has closed). */
  onWritable(wake: () => void): void {
    this.#waiters.push(wake);
    this.#timer ??= setInterval(() => {
      if (!this.congested) this.wakeAll();
    }, POLL_MS);
  }

  whenWritable(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    return new Promise((resolve) => this.onWritable(resolve));
  }

  /** Wakes every waiter and stops polling: on drain, or when the socket is gone. */
  wakeAll(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
