// A TCP relay that behaves like a slow WAN link: each direction has a fixed one-way delay and a
// rate cap, and a bounded queue in front of the cap. A full queue stops the relay reading from
// the sender, so the sender meets TCP backpressure the way it would behind a real bottleneck,
// instead of the relay buffering without bound.
import type { Socket, TCPSocketListener } from "bun";

export interface DelayRelayOptions {
  targetPort: number;
  targetHost?: string;
  /** Added to every byte in each direction; the round trip gains twice this. */
  oneWayDelayMs: number;
  /** Rate cap per direction. */
  bytesPerSecond: number;
  /** Bytes that may wait for the rate cap per direction before the sender is paused. */
  queueBytes: number;
}

export interface DelayRelay {
  readonly port: number;
  /** Closes the listener and every relayed connection at once. */
  stop(): void;
}

/** Slices are small so that a 512 KiB read leaves the link paced, not in one burst. */
const SLICE_BYTES = 16 * 1024;

type Entry = { bytes: Uint8Array; deliverAt: number };

/** One direction of one connection: bytes read from `source`, delivered to `sink` late. */
class Lane {
  sink: Socket<unknown> | null = null;
  readonly #source: Socket<unknown>;
  readonly #options: DelayRelayOptions;
  readonly #fifo: Entry[] = [];
  /** Bytes in `#fifo` not yet taken by the sink: in the queue, on the wire, or refused by it. */
  #unwritten = 0;
  /** When the link finishes sending the last byte accepted so far. */
  #linkFreeAt = 0;
  #paused = false;
  #sourceEnded = false;
  #sinkEnded = false;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(source: Socket<unknown>, options: DelayRelayOptions) {
    this.#source = source;
    this.#options = options;
  }

  push(bytes: Uint8Array): void {
    if (this.#sinkEnded) return;
    const { bytesPerSecond, oneWayDelayMs } = this.#options;
    for (let offset = 0; offset < bytes.byteLength; offset += SLICE_BYTES) {
      // Bun reuses the read buffer after the handler returns, so the slice must be a copy.
      const slice = bytes.slice(offset, offset + SLICE_BYTES);
      const departAt =
        Math.max(performance.now(), this.#linkFreeAt) + (slice.byteLength / bytesPerSecond) * 1000;
      this.#linkFreeAt = departAt;
      this.#fifo.push({ bytes: slice, deliverAt: departAt + oneWayDelayMs });
      this.#unwritten += slice.byteLength;
    }
    this.#throttle();
    this.#schedule();
  }

  /** The sender finished (FIN or close): pass it on once everything before it is delivered. */
  end(): void {
    this.#sourceEnded = true;
    this.#flush();
  }

  /** The sink went away: nothing more can be delivered. */
  abandon(): void {
    this.#sinkEnded = true;
    this.#fifo.length = 0;
    this.#unwritten = 0;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** The sink connected, or took what it refused before. */
  drain(): void {
    this.#flush();
  }

  /** Bytes waiting for the rate cap: the link's backlog at this moment. */
  #backlog(): number {
    return Math.max(0, this.#linkFreeAt - performance.now()) * (this.#options.bytesPerSecond / 1000);
  }

  /**
   * Paused while the rate cap's queue is full, or while a slow sink leaves more than the queue
   * plus what the link holds in flight (its bandwidth-delay product) undelivered.
   */
  #full(): boolean {
    const { bytesPerSecond, oneWayDelayMs, queueBytes } = this.#options;
    const inFlight = (bytesPerSecond * oneWayDelayMs) / 1000;
    return this.#backlog() > queueBytes || this.#unwritten > queueBytes + inFlight + SLICE_BYTES;
  }

  #throttle(): void {
    const full = this.#full();
    if (full && !this.#paused) this.#source.pause();
    if (!full && this.#paused) this.#source.resume();
    this.#paused = full;
  }

  #flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const sink = this.sink;
    if (sink === null || this.#sinkEnded) return;
    const now = performance.now();
    while (this.#fifo.length > 0) {
      const head = this.#fifo[0] as Entry;
      if (head.deliverAt > now) break;
      const written = sink.write(head.bytes);
      if (written < 0) {
        this.abandon();
        return;
      }
      this.#unwritten -= Math.max(0, written);
      if (written < head.bytes.byteLength) {
        // The sink's kernel buffer is full; `drain` calls back here for the rest.
        head.bytes = head.bytes.subarray(Math.max(0, written));
        this.#throttle();
        return;
      }
      this.#fifo.shift();
    }
    if (this.#fifo.length === 0 && this.#sourceEnded) {
      this.#sinkEnded = true;
      sink.end();
      return;
    }
    this.#throttle();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== null || this.#sinkEnded) return;
    const head = this.#fifo[0];
    // A paused sender is woken by the queue falling below the bound, even if nothing is due.
    const wakeForQueue = this.#paused
      ? this.#linkFreeAt - this.#options.queueBytes / (this.#options.bytesPerSecond / 1000)
      : Infinity;
    const at = Math.min(head?.deliverAt ?? Infinity, wakeForQueue);
    if (at === Infinity) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#flush();
      },
      Math.max(0, Math.ceil(at - performance.now())),
    );
  }
}

type Client = { up: Lane; down: Lane | null; upstream: Socket<unknown> | null };

export function startDelayRelay(options: DelayRelayOptions): DelayRelay {
  const host = options.targetHost ?? "127.0.0.1";
  const clients = new Set<Socket<Client>>();
  const upstreams = new Set<Socket<unknown>>();
  const listener: TCPSocketListener<Client> = Bun.listen<Client>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        clients.add(client);
        const state: Client = {
          up: new Lane(client as Socket<unknown>, options),
          down: null,
          upstream: null,
        };
        client.data = state;
        void Bun.connect({
          hostname: host,
          port: options.targetPort,
          socket: {
            open(upstream) {
              upstreams.add(upstream);
              state.upstream = upstream;
              state.down = new Lane(upstream, options);
              state.down.sink = client as Socket<unknown>;
              state.up.sink = upstream;
              state.up.drain();
            },
            data(_upstream, bytes) {
              state.down?.push(bytes);
            },
            drain() {
              state.up.drain();
            },
            end() {
              state.down?.end();
            },
            close(upstream) {
              upstreams.delete(upstream);
              state.up.abandon();
              state.down?.end();
            },
            error() {},
          },
        }).catch(() => {
          // Nothing listens at the target: the client sees its connection close, like a refused dial.
          state.up.abandon();
          client.end();
        });
      },
      data(client, bytes) {
        client.data.up.push(bytes);
      },
      drain(client) {
        client.data.down?.drain();
      },
      end(client) {
        client.data.up.end();
      },
      close(client) {
        clients.delete(client);
        client.data.down?.abandon();
        client.data.up.end();
      },
      error() {},
    },
  });
  return {
    port: listener.port,
    stop() {
      listener.stop(true);
      for (const socket of [...clients, ...upstreams]) socket.terminate();
      clients.clear();
      upstreams.clear();
    },
  };
}
