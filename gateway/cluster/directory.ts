// The cluster's shared state, all of it in Redis: which gateways are alive and which of them hold
// a session for each agent. Every record expires unless its gateway refreshes it, so a gateway
// that dies drops out by itself; a gateway that loses Redis re-registers everything it holds at
// the first refresh after Redis returns.
//
// Keys (any Redis 6 or later; no module, no script):
//   indranet:gateways          sorted set: gateway id -> expiry (unix ms)
//   indranet:gateway:<id>      string: the gateway's advertised ingress URL, with a TTL
//   indranet:agent:<agent>     sorted set: gateway id -> expiry; the key itself has a TTL too
//   indranet:left:<agent>      string: set when the agent's last session on a gateway closed,
//                              for the hold period, so any gateway holds requests for it
import { RedisClient } from "bun";
import { randomHex } from "../../shared/auth.ts";
import { log } from "../../shared/log.ts";
import type { RegistryObserver } from "../sessions.ts";

/** A record lives this long unless refreshed. */
export const RECORD_TTL_MS = 10_000;
/** How often a gateway refreshes its records, and retries Redis when it is away. */
export const REFRESH_MS = 2_000;
/** A Redis command that has not answered in this long counts as Redis being away. */
const COMMAND_TIMEOUT_MS = 1_000;
/** Where an agent is found is remembered this long, so a busy agent costs no lookup per request. */
const LOCATE_CACHE_MS = 1_000;
/**
 * A peer that refused a connection is skipped this long: long enough for its agents to dial
 * another gateway, short enough that a peer back from a restart is not shunned.
 */
const SUSPECT_MS = 3_000;

const KEY = {
  gateways: "indranet:gateways",
  gateway: (id: string) => `indranet:gateway:${id}`,
  agent: (agentId: string) => `indranet:agent:${agentId}`,
  left: (agentId: string) => `indranet:left:${agentId}`,
};

export interface Peer {
  id: string;
  /** Its advertised ingress origin, e.g. http://10.0.0.5:8082. */
  url: string;
}

/** Where a request for an agent can go, as far as the directory knows. */
export type Location =
  | { kind: "peers"; peers: Peer[] }
  /** No live gateway holds it; `recentlyLeft` when one did moments ago. */
  | { kind: "absent"; recentlyLeft: boolean }
  | { kind: "unavailable" };

export class ClusterDirectory implements RegistryObserver {
  readonly gatewayId = randomHex(8);
  readonly #redisUrl: string;
  readonly #holdMs: number;
  readonly #localAgents: () => Iterable<string>;
  #advertise = "";
  #client: RedisClient | undefined;
  #available = false;
  #everAvailable = false;
  /** Set once an outage is logged, so one outage is one warning. */
  #reportedDown = false;
  #timer: Timer | undefined;
  readonly #urls = new Map<string, string>();
  readonly #located = new Map<string, { peers: Peer[]; at: number }>();
  readonly #lookups = new Map<string, Promise<Location>>();
  readonly #suspects = new Map<string, number>();
  /** The live gateways, this one included, as of the last refresh (every 2 s). */
  liveGateways: Peer[] = [];

  constructor(redisUrl: string, holdMs: number, localAgents: () => Iterable<string>) {
    this.#redisUrl = redisUrl;
    this.#holdMs = holdMs;
    this.#localAgents = localAgents;
  }

  /** Whether the last exchange with Redis worked. */
  get available(): boolean {
    return this.#available;
  }

  /** Joins the cluster; does not wait for Redis, which may come later. */
  start(advertise: string): void {
    this.#advertise = advertise;
    log.info(
      `cluster: gateway ${this.gatewayId} joins via ${redactUrl(this.#redisUrl)}, peers reach it at ${advertise}`,
    );
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), REFRESH_MS);
  }

  /** Writes this gateway's records again, reconnecting first when Redis was away. */
  async refresh(): Promise<void> {
    try {
      const client = await this.#connected();
      const now = Date.now();
      const expiry = String(now + RECORD_TTL_MS);
      const writes: Promise<unknown>[] = [
        client.send("ZADD", [KEY.gateways, expiry, this.gatewayId]),
        client.send("ZREMRANGEBYSCORE", [KEY.gateways, "-inf", String(now)]),
        client.send("SET", [KEY.gateway(this.gatewayId), this.#advertise, "PX", String(RECORD_TTL_MS)]),
      ];
      let agents = 0;
      for (const agentId of this.#localAgents()) {
        writes.push(...this.#registerCommands(client, agentId, expiry));
        agents++;
      }
      await timed(Promise.all(writes));
      this.#markAvailable(true, agents);
      this.liveGateways = await this.#gateways();
    } catch (error) {
      this.#markAvailable(false, 0, error);
    }
  }

  arrived(agentId: string): void {
    const client = this.#client;
    if (!client || !this.#available) return;
    const expiry = String(Date.now() + RECORD_TTL_MS);
    this.#located.delete(agentId);
    void timed(Promise.all(this.#registerCommands(client, agentId, expiry))).catch((error) =>
      this.#markAvailable(false, 0, error),
    );
  }

  left(agentId: string): void {
    const client = this.#client;
    if (!client || !this.#available) return;
    const writes = [client.send("ZREM", [KEY.agent(agentId), this.gatewayId])];
    if (this.#holdMs > 0)
      writes.push(client.send("SET", [KEY.left(agentId), "1", "PX", String(this.#holdMs)]));
    void timed(Promise.all(writes)).catch((error) => this.#markAvailable(false, 0, error));
  }

  /** The other gateways holding a session for `agentId`, a quiet absence, or Redis being away. */
  async locate(agentId: string): Promise<Location> {
    const now = Date.now();
    const cached = this.#located.get(agentId);
    if (cached && now - cached.at < LOCATE_CACHE_MS) {
      const peers = cached.peers.filter((peer) => !this.#isSuspect(peer.id, now));
      if (peers.length > 0) return { kind: "peers", peers };
    }
    const client = this.#client;
    if (!client || !this.#available) return { kind: "unavailable" };
    // Requests for one agent arriving together share one lookup.
    const pending = this.#lookups.get(agentId);
    if (pending) return pending;
    const lookup = this.#lookup(client, agentId, now);
    this.#lookups.set(agentId, lookup);
    try {
      return await lookup;
    } finally {
      this.#lookups.delete(agentId);
    }
  }

  async #lookup(client: RedisClient, agentId: string, now: number): Promise<Location> {
    try {
      const [ids, left] = (await timed(
        Promise.all([
          client.send("ZRANGEBYSCORE", [KEY.agent(agentId), String(now), "+inf"]),
          client.send("EXISTS", [KEY.left(agentId)]),
        ]),
      )) as [string[], number];
      const others = ids.filter((id) => id !== this.gatewayId && !this.#isSuspect(id, now));
      const peers = await this.#peers(client, others);
      if (peers.length === 0) return { kind: "absent", recentlyLeft: left === 1 || ids.length > 0 };
      this.#located.set(agentId, { peers, at: now });
      return { kind: "peers", peers };
    } catch (error) {
      this.#markAvailable(false, 0, error);
      return { kind: "unavailable" };
    }
  }

  /** Every agent registered in the cluster and the gateways holding it, for the admin API. */
  async agents(): Promise<Record<string, string[]>> {
    const client = this.#client;
    if (!client || !this.#available) return {};
    const found: Record<string, string[]> = {};
    const now = String(Date.now());
    let cursor = "0";
    do {
      const [next, keys] = (await timed(
        client.send("SCAN", [cursor, "MATCH", KEY.agent("*"), "COUNT", "1000"]),
      )) as [string, string[]];
      cursor = next;
      const holders = (await timed(
        Promise.all(keys.map((key) => client.send("ZRANGEBYSCORE", [key, now, "+inf"]))),
      )) as string[][];
      keys.forEach((key, i) => {
        const ids = holders[i] ?? [];
        if (ids.length > 0) found[key.slice(KEY.agent("").length)] = ids;
      });
    } while (cursor !== "0");
    return found;
  }

  /** A peer refused or dropped a forwarded request's connection: skip it for a while. */
  suspect(peerId: string): void {
    this.#suspects.set(peerId, Date.now() + SUSPECT_MS);
    for (const [agentId, entry] of this.#located) {
      if (entry.peers.some((peer) => peer.id === peerId)) this.#located.delete(agentId);
    }
  }

  /** The cached location of an agent proved wrong. */
  forget(agentId: string): void {
    this.#located.delete(agentId);
  }

  /** The live gateways, this one included. */
  async #gateways(): Promise<Peer[]> {
    const client = this.#client;
    if (!client || !this.#available) return [];
    try {
      const ids = (await timed(
        client.send("ZRANGEBYSCORE", [KEY.gateways, String(Date.now()), "+inf"]),
      )) as string[];
      return await this.#peers(client, ids);
    } catch {
      return [];
    }
  }

  /** Leaves the cluster: this gateway's records go at once instead of expiring. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    const client = this.#client;
    if (client && this.#available) {
      const writes = [
        client.send("ZREM", [KEY.gateways, this.gatewayId]),
        client.send("DEL", [KEY.gateway(this.gatewayId)]),
      ];
      for (const agentId of this.#localAgents())
        writes.push(client.send("ZREM", [KEY.agent(agentId), this.gatewayId]));
      await timed(Promise.all(writes)).catch(() => {});
    }
    client?.close();
    this.#client = undefined;
  }

  #registerCommands(client: RedisClient, agentId: string, expiry: string): Promise<unknown>[] {
    const key = KEY.agent(agentId);
    return [
      client.send("ZADD", [key, expiry, this.gatewayId]),
      client.send("PEXPIRE", [key, String(RECORD_TTL_MS)]),
      client.send("DEL", [KEY.left(agentId)]),
    ];
  }

  async #peers(client: RedisClient, ids: string[]): Promise<Peer[]> {
    const unknown = ids.filter((id) => !this.#urls.has(id));
    if (unknown.length > 0) {
      const urls = (await timed(client.send("MGET", unknown.map(KEY.gateway)))) as (string | null)[];
      unknown.forEach((id, i) => {
        const url = urls[i];
        if (url) this.#urls.set(id, url);
      });
    }
    const peers: Peer[] = [];
    for (const id of ids) {
      const url = this.#urls.get(id);
      if (url) peers.push({ id, url });
    }
    return peers;
  }

  #isSuspect(peerId: string, now: number): boolean {
    const until = this.#suspects.get(peerId);
    if (until === undefined) return false;
    if (now < until) return true;
    this.#suspects.delete(peerId);
    return false;
  }

  async #connected(): Promise<RedisClient> {
    if (this.#client?.connected) return this.#client;
    this.#client?.close();
    // Reconnects are this class's: each refresh tries once, so Redis coming back is noticed
    // within one refresh however long it was away.
    const client = new RedisClient(this.#redisUrl, {
      autoReconnect: false,
      enableOfflineQueue: false,
      connectionTimeout: COMMAND_TIMEOUT_MS,
    });
    client.onclose = () => {
      if (this.#client === client) this.#available = false;
    };
    this.#client = client;
    await timed(client.connect());
    return client;
  }

  #markAvailable(ok: boolean, agents: number, error?: unknown): void {
    if (ok && !this.#available) {
      log.info(
        `cluster: ${this.#everAvailable ? "Redis is back, re-registered" : "registered"} ${agents} agent(s)`,
      );
    }
    if (!ok && !this.#reportedDown) {
      const why = error instanceof Error ? error.message : String(error);
      log.warn(
        `cluster: Redis unavailable (${why}); serving local agents only, retrying every ${REFRESH_MS / 1000} s`,
      );
    }
    if (!ok) {
      this.#located.clear();
      // A command that timed out stays queued on its connection: a connection that stopped
      // answering is dropped, so the next refresh dials a fresh one instead of queueing more.
      this.#client?.close();
      this.#client = undefined;
    }
    this.#reportedDown = !ok;
    this.#everAvailable ||= ok;
    this.#available = ok;
  }
}

function timed<T>(promise: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no answer within ${COMMAND_TIMEOUT_MS} ms`)),
      COMMAND_TIMEOUT_MS,
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** The URL without its password, for the logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(invalid URL)";
  }
}
