// The public TCP ports of [[tcp]]: each accepted connection becomes one stream on a session of the
// port's agent, to the service the port names. Bound at start; a reload binds new ports, closes
// removed ones and rebinds changed ones (connections already open carry on).
import type { Socket, TCPSocketListener } from "bun";
import { log } from "../../shared/log.ts";
import type { Locator } from "../locate.ts";
import { sharesPort } from "../reuse-port.ts";
import type { TcpRoute } from "./config.ts";
import type { TcpOutcome, TcpStream } from "./stream.ts";

/** One finished TCP connection, for the access log and the metrics. */
export interface TcpExchange extends TcpOutcome {
  agentId: string;
  service: string;
  clientIp: string;
  durationMs: number;
}

export interface TcpPortsOptions {
  bind: string;
  locator: Locator;
  maxStreamsPerAgent: number;
  accepting: () => boolean;
  /** The agent's address lists ([agents."id"] allow and deny) for a connecting client. */
  admits: (agentId: string, clientIp: string) => boolean;
  observe: (exchange: TcpExchange) => void;
}

/** One client connection: waiting for a session, then relayed by its stream. */
class TcpClient {
  readonly startedAt = performance.now();
  readonly gone = new AbortController();
  stream: TcpStream | null = null;
  /** What the client sent before the stream existed; the socket is paused meanwhile. */
  early: Uint8Array[] = [];
  ended = false;

  constructor(
    readonly route: TcpRoute,
    readonly clientIp: string,
  ) {}
}

export class TcpPorts {
  readonly #options: TcpPortsOptions;
  readonly #listeners = new Map<string, { route: TcpRoute; listener: TCPSocketListener<TcpClient> }>();
  /** Connections open now, for the metrics. */
  open = 0;

  constructor(options: TcpPortsOptions) {
    this.#options = options;
  }

  /**
   * Makes the listeners match `routes`: new ones bound, removed ones closed, changed ones rebound.
   * A port that cannot be bound is logged and the others still apply.
   */
  apply(routes: readonly TcpRoute[]): void {
    const wanted = new Map(routes.map((route, i) => [routeKey(route, i), route]));
    for (const [key, { route, listener }] of this.#listeners) {
      const next = wanted.get(key);
      if (next && next.agent === route.agent && next.service === route.service) continue;
      listener.stop();
      this.#listeners.delete(key);
      log.info(`tcp port ${route.port} for ${route.agent}/${route.service} closed`);
    }
    for (const [key, route] of wanted) if (!this.#listeners.has(key)) this.#listen(key, route);
  }

  /** Stops listening; open connections end with their sessions. */
  stop(): void {
    for (const { listener } of this.#listeners.values()) listener.stop();
    this.#listeners.clear();
  }

  #listen(key: string, route: TcpRoute): void {
    const { bind } = this.#options;
    let listener: TCPSocketListener<TcpClient>;
    try {
      listener = Bun.listen<TcpClient>({
        hostname: bind,
        port: route.port,
        ...sharedPort(route.port),
        allowHalfOpen: true,
        socket: {
          open: (socket) => this.#accept(socket, route),
          data: (socket, bytes) => {
            const client = socket.data;
            if (client.stream) return client.stream.fromClient(bytes);
            client.early.push(bytes);
            socket.pause();
          },
          drain: (socket) => socket.data.stream?.drained(),
          end: (socket) => {
            socket.data.ended = true;
            socket.data.stream?.clientEnded();
          },
          close: (socket, error) => this.#closed(socket.data, error),
          error: (socket, error) => this.#closed(socket.data, error),
        },
      });
    } catch (error) {
      log.error(`tcp port ${route.port} for ${route.agent}/${route.service}: ${(error as Error).message}`);
      return;
    }
    this.#listeners.set(key, { route, listener });
    log.info(`tcp port for ${route.agent}/${route.service} listening on ${bind}:${listener.port}`);
  }

  #accept(socket: Socket<TcpClient>, route: TcpRoute): void {
    const client = new TcpClient(route, socket.remoteAddress);
    socket.data = client;
    if (!this.#options.accepting()) {
      socket.end();
      return;
    }
    this.open++;
    // Refused before anything is opened: the agent never hears of it.
    if (!this.#options.admits(route.agent, client.clientIp)) {
      socket.end();
      return this.#finished(client, {
        bytesIn: 0,
        bytesOut: 0,
        error: "forbidden by the agent's address lists",
      });
    }
    socket.setNoDelay(true);
    void this.#connect(socket, client);
  }

  // Like an HTTP request: a session now, or after a hold while the agent reconnects. TCP is not
  // forwarded between gateways: an agent on a peer is refused like an absent one.
  async #connect(socket: Socket<TcpClient>, client: TcpClient): Promise<void> {
    const { route } = client;
    const target = await this.#options.locator.locate(route.agent, client.gone.signal);
    if (client.gone.signal.aborted) {
      return this.#finished(client, {
        bytesIn: 0,
        bytesOut: 0,
        error: "client left before the agent was found",
      });
    }
    let refusal: string | undefined;
    if (target.kind === "refused") refusal = target.error.message;
    else if (target.kind === "peer")
      refusal = "the agent is connected to another gateway (TCP is not forwarded)";
    else if (!target.session.info.tcpServices.includes(route.service)) {
      refusal = `the agent does not serve '${route.service}'`;
    } else if (target.session.streams.size >= this.#options.maxStreamsPerAgent) {
      refusal = `too many streams (${this.#options.maxStreamsPerAgent})`;
    }
    if (refusal !== undefined || target.kind !== "local") {
      socket.end();
      return this.#finished(client, { bytesIn: 0, bytesOut: 0, error: refusal });
    }
    const stream = target.session.openTcp(route.service, (outcome) => this.#finished(client, outcome));
    client.stream = stream;
    socket.resume();
    stream.attach(socket);
    for (const bytes of client.early.splice(0)) stream.fromClient(bytes);
    if (client.ended) stream.clientEnded();
  }

  #closed(client: TcpClient, error?: Error): void {
    if (client.stream) return client.stream.clientClosed(error?.message);
    client.gone.abort();
  }

  #finished(client: TcpClient, outcome: TcpOutcome): void {
    this.open--;
    this.#options.observe({
      ...outcome,
      agentId: client.route.agent,
      service: client.route.service,
      clientIp: client.clientIp,
      durationMs: performance.now() - client.startedAt,
    });
  }
}

/**
 * A successor process binds the same port while this one drains (a restart). Bun.listen takes
 * `reusePort` as Bun.serve does, though its type declarations do not list it yet.
 */
function sharedPort(port: number): Partial<Bun.TCPSocketListenOptions<TcpClient>> {
  return { reusePort: sharesPort(port) } as Partial<Bun.TCPSocketListenOptions<TcpClient>>;
}

/** A listener is known by its port; port 0 routes (tests) by their place in the list. */
function routeKey(route: TcpRoute, index: number): string {
  return route.port === 0 ? `0/${index}` : String(route.port);
}
