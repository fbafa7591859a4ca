// Which names need a certificate and when: ordered when a name is first wanted, renewed well
// before expiry, retried with a growing delay when the CA refuses. A name never gets another
// name's certificate: until its own arrives, its clients get the --tls-cert pair or no TLS.
import { log } from "../../shared/log.ts";
import type { Counter } from "../../shared/metrics.ts";
import { type CertificateSet, validity } from "../certificates.ts";
import type { TlsPair } from "../tls.ts";
import type { AcmeStore } from "./store.ts";

/** Gets one certificate for one name from the CA. */
export interface Issuer {
  issue(name: string): Promise<TlsPair>;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** Renewal starts this long before expiry (Let's Encrypt's advice), or at two thirds of a shorter life. */
const RENEW_BEFORE_MS = 30 * DAY_MS;

/** The first retry after a failure; each further one waits twice as long, up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = MINUTE_MS;
const MAX_RETRY_MS = 6 * HOUR_MS;

/** Orders in progress at once; the rest wait their turn (CAs limit orders per account). */
export const ORDERS_AT_ONCE = 4;

/** An order still running after this long counts as failed (a CA that stopped answering). */
export const ORDER_DEADLINE_MS = 5 * MINUTE_MS;

/**
 * Names without a certificate that may be ordered per hour, and at most at once: each agent id a
 * token allows becomes a name, and CAs count new certificates per domain and week.
 */
export const NEW_NAMES_PER_HOUR = 30;

/** Names kept at most; an agent id beyond them is served by --tls-cert or not over TLS. */
export const MAX_NAMES = 10_000;

/** A name nobody asked for this long (an agent gone, a host removed) is no longer renewed. */
const UNUSED_MS = 30 * DAY_MS;

/** Timers are set at most this far ahead (setTimeout's limit is under 25 days). */
const MAX_SLEEP_MS = HOUR_MS;

interface NameState {
  /** When to order next: 0 at once, the renewal time, or the retry time after a failure. */
  dueAt: number;
  failures: number;
  ordering: boolean;
  /** Fixed names ([acme] names, the domain, [[hosts]]) are renewed as long as configured. */
  fixed: boolean;
  /** The last time an agent asked for it. */
  wantedAt: number;
}

export interface ManagerOptions {
  issuer: Issuer;
  store: AcmeStore;
  certificates: CertificateSet;
  /** Called after a name's certificate was added or replaced. */
  changed: (name: string) => void;
  failures: Counter;
  /** True while a name is in use although not asked for lately (its agent is connected). */
  inUse: (name: string) => boolean;
  now?: () => number;
}

export class CertificateManager {
  readonly #options: ManagerOptions;
  readonly #now: () => number;
  readonly #names = new Map<string, NameState>();
  #ordering = 0;
  /** Start times of the orders for names that had no certificate, within the last hour. */
  #newOrders: number[] = [];
  #timer: Timer | undefined;
  #stopped = false;
  #capWarned = false;

  constructor(options: ManagerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Puts what the state dir holds into the set; nothing is ordered yet. */
  load(): number {
    let loaded = 0;
    for (const [name, pair] of this.#options.store.readCertificates()) {
      const life = validity(pair.cert);
      if (!life || life.notAfter <= this.#now()) continue;
      if (this.#options.certificates.set(name, pair)) loaded++;
    }
    if (loaded > 0) log.info(`acme: ${loaded} certificate(s) loaded from ${this.#options.store.path}`);
    return loaded;
  }

  /** The configured names: kept and renewed while configured; others are left to expire. */
  setFixed(names: string[]): void {
    const fixed = new Set(names);
    for (const [name, state] of this.#names) {
      if (state.fixed && !fixed.has(name)) {
        state.fixed = false;
        state.wantedAt = this.#now();
      }
    }
    for (const name of fixed) this.#want(name, true);
    this.#schedule();
  }

  /** An agent's name: ordered if missing, renewed while its agent keeps coming back. */
  want(name: string): void {
    this.#want(name, false);
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #want(name: string, fixed: boolean): void {
    if (this.#stopped) return;
    const known = this.#names.get(name);
    if (known) {
      known.wantedAt = this.#now();
      known.fixed ||= fixed;
      return;
    }
    if (this.#names.size >= MAX_NAMES) {
      if (!this.#capWarned)
        log.warn(`acme: ${MAX_NAMES} names hold certificates; ${name} and later ones get none`);
      this.#capWarned = true;
      return;
    }
    const life = validity(this.#options.certificates.get(name)?.cert);
    const dueAt = life ? renewalTime(life) : 0;
    this.#names.set(name, { dueAt, failures: 0, ordering: false, fixed, wantedAt: this.#now() });
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    const now = this.#now();
    this.#newOrders = this.#newOrders.filter((at) => at > now - HOUR_MS);
    let next = Number.POSITIVE_INFINITY;
    for (const [name, state] of this.#names) {
      if (state.ordering) continue;
      if (state.dueAt > now) {
        next = Math.min(next, state.dueAt);
        continue;
      }
      if (!state.fixed && now - state.wantedAt > UNUSED_MS && !this.#options.inUse(name)) {
        log.info(`acme: ${name} has not been asked for in 30 days; its certificate is left to expire`);
        this.#names.delete(name);
        continue;
      }
      const fresh = !this.#options.certificates.has(name);
      if (this.#ordering >= ORDERS_AT_ONCE) continue; // a finishing order schedules again
      if (fresh && this.#newOrders.length >= NEW_NAMES_PER_HOUR) {
        next = Math.min(next, (this.#newOrders[0] ?? now) + HOUR_MS);
        continue;
      }
      if (fresh) this.#newOrders.push(now);
      void this.#order(name, state);
    }
    if (next === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(() => this.#schedule(), Math.min(Math.max(next - now, 1_000), MAX_SLEEP_MS));
  }

  async #order(name: string, state: NameState): Promise<void> {
    const { certificates, store, issuer } = this.#options;
    state.ordering = true;
    this.#ordering++;
    log.info(`acme: ${certificates.has(name) ? "renewing" : "ordering"} the certificate for ${name}`);
    try {
      const pair = await withDeadline(issuer.issue(name), ORDER_DEADLINE_MS);
      if (this.#stopped) return;
      const life = validity(pair.cert);
      if (!life) throw new Error("the CA sent a certificate that does not parse");
      store.writeCertificate(name, pair);
      certificates.set(name, pair);
      state.failures = 0;
      state.dueAt = this.#nextRenewal(name, life);
      log.info(
        `acme: certificate for ${name} issued, valid until ${new Date(life.notAfter).toISOString()}, renewed from ${new Date(state.dueAt).toISOString()}`,
      );
      this.#options.changed(name);
    } catch (error) {
      if (this.#stopped) return;
      state.failures++;
      const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (state.failures - 1));
      state.dueAt = this.#now() + wait;
      this.#options.failures.inc(1, name);
      const meanwhile = certificates.has(name)
        ? "its current certificate is served meanwhile"
        : "it is not served over TLS meanwhile";
      log.error(
        `acme: no certificate for ${name}: ${reason(error)}; trying again in ${Math.round(wait / 1000)} s, ${meanwhile}`,
      );
    } finally {
      state.ordering = false;
      this.#ordering--;
      this.#schedule();
    }
  }

  /** The renewal time, unless the certificate came already due (a clock ahead, a CA's short life). */
  #nextRenewal(name: string, life: { notBefore: number; notAfter: number }): number {
    const at = renewalTime(life);
    const now = this.#now();
    if (at > now) return at;
    const later = now + Math.max(FIRST_RETRY_MS, Math.min(HOUR_MS, (life.notAfter - now) / 2));
    log.warn(
      `acme: the certificate for ${name} is due for renewal as it arrives; renewing it from ${new Date(later).toISOString()}`,
    );
    return later;
  }
}

/** Renewal time: 30 days before expiry, or when a third of a shorter life is left. */
export function renewalTime(life: { notBefore: number; notAfter: number }): number {
  const before = Math.min(RENEW_BEFORE_MS, (life.notAfter - life.notBefore) / 3);
  return life.notAfter - before;
}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the CA did not finish the order within ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** The CA's own words when it gave any (acme-client puts its problem detail in the message). */
function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
