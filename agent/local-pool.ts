// Keep-alive TCP connections to the local service. Each connection serves one exchange at a
// time; between exchanges it waits in the pool instead of paying a new handshake per request.
import type { Socket } from "bun";

/** A local connect that takes longer than this is treated as an unreachable service. */
export const LOCAL_CONNECT_TIMEOUT_MS = 5_000;

/** Idle connections are closed after this long, before most servers' own keep-alive timeouts. */
const IDLE_TIMEOUT_S = 4;

/** Idle connections kept for reuse; more than this are closed when released. */
const MAX_IDLE = 64;

/** Receives the events of the connection while an exchange owns it. */
export interface LocalConnectionOwner {
  data(bytes: Uint8Array): void;
  drain(): void;
  closed(error: Error | undefined): void;
}

export class LocalConnection {
  owner: LocalConnectionOwner | null = null;
  /** True once the connection served an exchange: it may have been closed by the server meanwhile. */
  reused = false;
  /** When the connection last went back to the pool (performance.now()). */
  idleSince = 0;
  socket!: Socket<LocalConnection>;
  open = true;
}

export class LocalUnreachableError extends Error {
  override name = "LocalUnreachableError";
}

export class LocalPool {
  readonly #host: string;
  readonly #port: number;
  #idle: LocalConnection[] = [];

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
  }

  /** `host:port` of the local service, for URLs (an IPv6 host in brackets). */
  get authority(): string {
    return `${this.#host.includes(":") ? `[${this.#host}]` : this.#host}:${this.#port}`;
  }

  get idleCount(): number {
    return this.#idle.length;
  }

  /**
   * A connection for `owner`: the most recently released idle one (idle for less than
   * `maxIdleMs` when given), else a new one.
   */
  async acquire(owner: LocalConnectionOwner, maxIdleMs = Number.POSITIVE_INFINITY): Promise<LocalConnection> {
    let conn = this.#takeIdle(maxIdleMs);
    if (conn) {
      conn.socket.timeout(0);
      conn.reused = true;
    } else {
      conn = await this.#connect();
    }
    conn.owner = owner;
    return conn;
  }

  /** Returns a connection whose exchange completed cleanly and may be reused. */
  release(conn: LocalConnection): void {
    conn.owner = null;
    if (!conn.open) return;
    if (this.#idle.length >= MAX_IDLE) return this.destroy(conn);
    conn.idleSince = performance.now();
    conn.socket.timeout(IDLE_TIMEOUT_S);
    this.#idle.push(conn);
  }

  destroy(conn: LocalConnection): void {
    conn.owner = null;
    if (!conn.open) return;
    conn.open = false;
    conn.socket.terminate();
  }

  closeAll(): void {
    for (const conn of this.#idle) this.destroy(conn);
    this.#idle = [];
  }

  // The pool is a stack in release order: when the newest is too old, so are all the others,
  // and they stay for requests that may take them.
  #takeIdle(maxIdleMs: number): LocalConnection | undefined {
    while (this.#idle.length > 0) {
      const conn = this.#idle[this.#idle.length - 1] as LocalConnection;
      if (conn.open && performance.now() - conn.idleSince >= maxIdleMs) return undefined;
      this.#idle.pop();
      if (conn.open) return conn;
    }
    return undefined;
  }

  async #connect(): Promise<LocalConnection> {
    const conn = new LocalConnection();
    let timer: Timer | undefined;
    const connecting = Bun.connect<LocalConnection>({
      hostname: this.#host,
      port: this.#port,
      data: conn,
      socket: {
        open: (socket) => {
          socket.setNoDelay(true);
        },
        data: (socket, bytes) => socket.data.owner?.data(bytes),
        drain: (socket) => socket.data.owner?.drain(),
        close: (socket, error) => this.#closed(socket.data, error),
        error: (socket, error) => this.#closed(socket.data, error),
        timeout: (socket) => {
          if (socket.data.owner === null) this.destroy(socket.data);
        },
      },
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LocalUnreachableError(`connect timed out after ${LOCAL_CONNECT_TIMEOUT_MS} ms`)),
        LOCAL_CONNECT_TIMEOUT_MS,
      );
    });
    try {
      conn.socket = await Promise.race([connecting, timeout]);
      return conn;
    } catch (error) {
      // A connect that completes after its timeout must not leak a socket.
      void connecting.then((socket) => socket.terminate()).catch(() => {});
      if (error instanceof LocalUnreachableError) throw error;
      throw new LocalUnreachableError(`${this.#host}:${this.#port}: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  #closed(conn: LocalConnection, error: Error | undefined): void {
    if (!conn.open && conn.owner === null) return;
    conn.open = false;
    const owner = conn.owner;
    conn.owner = null;
    if (owner) owner.closed(error);
    else this.#idle = this.#idle.filter((c) => c !== conn);
  }
}
