// Bun's server WebSocket backpressure, as both the agent port and the ingress's WebSockets see it:
// send() answers -1 when it queued the message, and the socket is full until its drain event.

export class DrainGate {
  #full = false;
  #waiters: (() => void)[] = [];

  get full(): boolean {
    return this.#full;
  }

  /** Takes send()'s answer: -1 closes the gate until `drained()`. */
  sent(result: number): void {
    if (result === -1) this.#full = true;
  }

  /** Calls `wake` now, or once the socket has drained. */
  onDrain(wake: () => void): void {
    if (this.#full) this.#waiters.push(wake);
    else wake();
  }

  /** Bun's drain event, or the socket closed: whoever waits may send again. */
  drained(): void {
    this.#full = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
