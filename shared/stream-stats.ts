// What the process's streams hold right now, for metrics and for the tests that prove flow control:
// how many streams are live, and the most body bytes any single stream ever held in this process
// (waiting for its reader or for credit). With working flow control that peak stays near one window,
// however slow a reader is.

export class StreamStats {
  #open = 0;
  #peakBuffered = 0;

  get open(): number {
    return this.#open;
  }

  get peakBuffered(): number {
    return this.#peakBuffered;
  }

  opened(): void {
    this.#open++;
  }

  closed(): void {
    this.#open--;
  }

  /** Reports how many body bytes one stream holds now. */
  buffered(bytes: number): void {
    if (bytes > this.#peakBuffered) this.#peakBuffered = bytes;
  }
}

/** One per process: each binary runs either the gateway's streams or the agent's. */
export const streamStats = new StreamStats();
