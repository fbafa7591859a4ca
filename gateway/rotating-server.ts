// A TLS listener whose certificates can change while it runs. Bun 1.4's server.reload() keeps the
// certificates a listener started with, so new ones are taken up by a second listener opened on
// the same port (SO_REUSEPORT, as a restarting gateway does) before the first stops listening.
// The first keeps its connections until they end: a download or an agent's WebSocket carries on,
// new connections reach the new certificates.
import type { Server, TLSOptions } from "bun";
import { log } from "../shared/log.ts";
import { sharesPort } from "./reuse-port.ts";

/** Opens one listener; `reusePort` is set whenever a successor may have to share the port. */
export type OpenServer<T> = (tls: TLSOptions[] | undefined, port: number, reusePort: boolean) => Server<T>;

export class RotatingServer<T> {
  readonly #open: OpenServer<T>;
  readonly #name: string;
  #current: Server<T>;
  /** Listeners that stopped accepting and still finish their connections. */
  readonly #retiring = new Set<Server<T>>();
  #stopped = false;

  /**
   * `port` 0 picks a free port. A listener that may rotate needs SO_REUSEPORT from the start,
   * which a port-0 bind must not ask for (sharesPort in reuse-port.ts), so a free port is found first.
   */
  constructor(options: {
    name: string;
    open: OpenServer<T>;
    tls: TLSOptions[] | undefined;
    hostname: string;
    port: number;
    rotates: boolean;
  }) {
    const { open, tls, port } = options;
    this.#open = open;
    this.#name = options.name;
    this.#current =
      options.rotates && port === 0
        ? openOnFreePort(open, tls, options.hostname)
        : open(tls, port, sharesPort(port));
  }

  get port(): number {
    return this.#current.port ?? 0;
  }

  /** Requests not yet answered, on the current listener and on those still finishing. */
  get pendingRequests(): number {
    let pending = this.#current.pendingRequests;
    for (const server of this.#retiring) pending += server.pendingRequests;
    return pending;
  }

  /**
   * Serves `tls` from now on. When the new listener cannot open, the old one stays and the error
   * is the caller's to report.
   */
  rotate(tls: TLSOptions[]): void {
    // A gateway that stopped listening (draining) must not listen again.
    if (this.#stopped) return;
    const next = this.#open(tls, this.port, true);
    const old = this.#current;
    this.#current = next;
    this.#retiring.add(old);
    // Idle kept-alive connections close now; ones in the middle of a request finish it.
    old
      .stop(false)
      .catch((error) => log.warn(`${this.#name}: closing the previous listener: ${error}`))
      .finally(() => this.#retiring.delete(old));
  }

  /** Stops listening; with `force`, cuts the connections of every listener too. */
  async stop(force = false): Promise<void> {
    this.#stopped = true;
    await Promise.all([this.#current, ...this.#retiring].map((server) => server.stop(force)));
  }
}

/**
 * Binds a port that is free now, found without SO_REUSEPORT (which a port-0 bind must not ask
 * for), then with it; a port taken in between is tried again with another.
 */
function openOnFreePort<T>(open: OpenServer<T>, tls: TLSOptions[] | undefined, hostname: string): Server<T> {
  for (let attempt = 1; ; attempt++) {
    const probe = Bun.listen({ hostname, port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    try {
      return open(tls, port, true);
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}
