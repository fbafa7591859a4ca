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

  /**
   * `port` 0 picks a free port. A listener that may rotate needs SO_REUSEPORT from the start,
   * which a port-0 bind must not ask for (sharesPort in reuse-port.ts), so a free port is found first.
   */
  constructor(
    name: string,
    open: OpenServer<T>,
    tls: TLSOptions[] | undefined,
    port: number,
    rotates: boolean,
  ) {
    this.#open = open;
    this.#name = name;
    const fixed = rotates && port === 0 ? freePort() : port;
    this.#current = open(tls, fixed, rotates || sharesPort(port));
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
    const next = this.#open(tls, this.port, true);
    const old = this.#current;
    this.#current = next;
    this.#retiring.add(old);
    // Idle kept-alive connections close now; ones in the middle of a request finish it.
    old.stop(false).then(
      () => this.#retiring.delete(old),
      (error) => log.warn(`${this.#name}: closing the previous listener: ${error}`),
    );
  }

  /** Stops listening; with `force`, cuts the connections of every listener too. */
  async stop(force = false): Promise<void> {
    await Promise.all([this.#current, ...this.#retiring].map((server) => server.stop(force)));
  }
}

/** A port free right now, for a listener that must set SO_REUSEPORT (which port 0 must not). */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}
