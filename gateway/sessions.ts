// Which agent sessions are connected under which id, and which one takes the next request.
import { log } from "../shared/log.ts";
import type { AgentSession } from "./session.ts";

/** How long an older session has to answer a ping once a newer one claims its id. */
export const PROBE_TIMEOUT_MS = 2_000;

/** Told when an id gains its first session and when it loses its last one. */
export interface RegistryObserver {
  arrived(agentId: string): void;
  left(agentId: string): void;
}

export class SessionRegistry {
  readonly #byId = new Map<string, AgentSession[]>();
  #roundRobin = 0;
  readonly #perToken = new Map<string, number>();
  readonly #observers: RegistryObserver[] = [];
  /** Bytes of sessions already gone, so the byte counters never go down. */
  #retiredBytesIn = 0;
  #retiredBytesOut = 0;

  observe(observer: RegistryObserver): void {
    this.#observers.push(observer);
  }

  /** The ids with at least one session that takes requests (not all stopping). */
  *agentIds(): IterableIterator<string> {
    for (const [agentId, list] of this.#byId) if (list.some((s) => !s.stopping)) yield agentId;
  }

  /**
   * A session's agent said it is stopping (it declined a request): when no other session of the
   * id takes requests, the id has left as far as the observers are concerned, so that requests
   * for it are held and other gateways stop sending it here.
   */
  stopping(session: AgentSession): void {
    const list = this.#byId.get(session.info.agentId) ?? [];
    if (list.some((s) => !s.stopping)) return;
    for (const observer of this.#observers) observer.left(session.info.agentId);
  }

  /** Newest last. */
  sessionsFor(agentId: string): readonly AgentSession[] {
    return this.#byId.get(agentId) ?? [];
  }

  all(): AgentSession[] {
    return [...this.#byId.values()].flat();
  }

  get size(): number {
    let n = 0;
    for (const list of this.#byId.values()) n += list.length;
    return n;
  }

  /** WebSocket bytes received from agents since the gateway started. */
  bytesIn(): number {
    let n = this.#retiredBytesIn;
    for (const session of this.all()) n += session.bytesIn;
    return n;
  }

  bytesOut(): number {
    let n = this.#retiredBytesOut;
    for (const session of this.all()) n += session.bytesOut;
    return n;
  }

  /** Sessions held under one token, all its ids together. */
  countForToken(token: string): number {
    return this.#perToken.get(token) ?? 0;
  }

  /** The token that holds an id, so a second token cannot take it over. */
  holderToken(agentId: string): string | undefined {
    return this.#byId.get(agentId)?.[0]?.info.token;
  }

  // A reconnecting agent must never be shadowed by its own stale session: older sessions for
  // the id are pinged at once and dropped by `expireProbes` unless they answer.
  add(session: AgentSession): void {
    const list = this.#byId.get(session.info.agentId) ?? [];
    const deadline = Date.now() + PROBE_TIMEOUT_MS;
    for (const older of list) {
      older.probeDeadline = deadline;
      older.ping();
    }
    list.push(session);
    this.#byId.set(session.info.agentId, list);
    this.#perToken.set(session.info.token, this.countForToken(session.info.token) + 1);
    // Every arrival, not only the first: the others may all be stopping (an agent restarting).
    for (const observer of this.#observers) observer.arrived(session.info.agentId);
  }

  remove(session: AgentSession): void {
    const list = this.#byId.get(session.info.agentId);
    if (!list?.includes(session)) return;
    this.#retiredBytesIn += session.bytesIn;
    this.#retiredBytesOut += session.bytesOut;
    const left = this.countForToken(session.info.token) - 1;
    if (left > 0) this.#perToken.set(session.info.token, left);
    else this.#perToken.delete(session.info.token);
    const rest = list.filter((s) => s !== session);
    if (rest.length > 0) return void this.#byId.set(session.info.agentId, rest);
    this.#byId.delete(session.info.agentId);
    // A stopping session already told the observers its id left.
    if (!session.stopping) for (const observer of this.#observers) observer.left(session.info.agentId);
  }

  /**
   * The session for the next request: sessions of a stopping agent are never picked, sessions
   * under probation only when nothing else is left; the others take turns, so several
   * connections for one id share the load.
   */
  pick(agentId: string): AgentSession | undefined {
    const list = this.#byId.get(agentId);
    if (!list) return undefined;
    if (list.length === 1) return list[0]?.stopping ? undefined : list[0];
    const open = list.filter((s) => !s.stopping);
    const live = open.filter((s) => s.probeDeadline === 0 && !s.closed);
    if (live.length === 0) return open[open.length - 1];
    this.#roundRobin = (this.#roundRobin + 1) % 0x7fffffff;
    return live[this.#roundRobin % live.length];
  }

  /** Drops sessions that missed their probe or stayed silent for too long. */
  expire(now: number, silenceLimitMs: number): void {
    for (const session of this.all()) {
      if (session.probeDeadline !== 0 && now > session.probeDeadline) {
        log.info(`agent ${session.info.agentId}: older session did not answer its probe, dropping it`);
        session.close(4000, "superseded by a newer connection");
      } else if (now - session.lastSeen > silenceLimitMs) {
        log.info(`agent ${session.info.agentId}: silent for ${now - session.lastSeen} ms, dropping session`);
        session.close(4001, "heartbeat timeout");
      }
    }
  }
}
