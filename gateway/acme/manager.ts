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

const DAY_MS = 86_400_000;

/** Renewal starts this long before expiry (Let's Encrypt's advice), or at two thirds of a shorter life. */
const RENEW_BEFORE_MS = 30 * DAY_MS;

/** The first retry after a failure; each further one waits twice as long, up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = 60_000;
const MAX_RETRY_MS = 6 * 3_600_000;

/** Orders in progress at once; the rest wait their turn (CAs limit orders per account). */
const ORDERS_AT_ONCE = 4;

/** Timers are set at most this far ahead (setTimeout's limit is under 25 days). */
const MAX_SLEEP_MS = 3_600_000;

interface NameState {
  /** When to order next: 0 at once, the renewal time, or the retry time after a failure. */
  dueAt: number;
  failures: number;
  ordering: boolean;
}

export class CertificateManager {
  readonly #issuer: Issuer;
  readonly #store: AcmeStore;
  readonly #certificates: CertificateSet;
  readonly #changed: () => void;
  readonly #failures: Counter;
  readonly #names = new Map<string, NameState>();
  #ordering = 0;
  #timer: Timer | undefined;
  #stopped = false;

  constructor(options: {
    issuer: Issuer;
    store: AcmeStore;
    certificates: CertificateSet;
    /** Called after a certificate was added or replaced. */
    changed: () => void;
    failures: Counter;
  }) {
    this.#issuer = options.issuer;
    this.#store = options.store;
    this.#certificates = options.certificates;
    this.#changed = options.changed;
    this.#failures = options.failures;
  }

  /**
   * Serves what the state dir holds (a name it no longer wants is still served until it expires),
   * then orders whatever of `names` is missing or due.
   */
  start(names: string[]): void {
    const now = Date.now();
    for (const [name, pair] of this.#store.readCertificates()) {
      const life = validity(pair.cert);
      if (!life || life.notAfter <= now) continue;
      this.#certificates.set(name, pair);
    }
    if (this.#certificates.size > 0) {
      log.info(`acme: ${this.#certificates.size} certificate(s) loaded from ${this.#store.path}`);
      this.#changed();
    }
    for (const name of names) this.want(name);
  }

  /** Makes sure `name` has a certificate from now on and keeps it renewed. */
  want(name: string): void {
    if (this.#stopped || this.#names.has(name)) return;
    const life = validity(this.#certificates.get(name)?.cert);
    this.#names.set(name, { dueAt: life ? renewalTime(life) : 0, failures: 0, ordering: false });
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [name, state] of this.#names) {
      if (state.ordering) continue;
      if (state.dueAt <= now && this.#ordering < ORDERS_AT_ONCE) {
        this.#order(name, state);
        continue;
      }
      next = Math.min(next, Math.max(state.dueAt, now + 1_000));
    }
    if (next === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(() => this.#schedule(), Math.min(next - now, MAX_SLEEP_MS));
  }

  async #order(name: string, state: NameState): Promise<void> {
    state.ordering = true;
    this.#ordering++;
    const renewal = this.#certificates.has(name);
    log.info(`acme: ${renewal ? "renewing" : "ordering"} the certificate for ${name}`);
    try {
      const pair = await this.#issuer.issue(name);
      const life = validity(pair.cert);
      if (!life) throw new Error("the CA sent a certificate that does not parse");
      this.#store.writeCertificate(name, pair);
      this.#certificates.set(name, pair);
      state.failures = 0;
      state.dueAt = renewalTime(life);
      log.info(
        `acme: certificate for ${name} issued, valid until ${new Date(life.notAfter).toISOString()}, renewed from ${new Date(state.dueAt).toISOString()}`,
      );
      this.#changed();
    } catch (error) {
      state.failures++;
      const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (state.failures - 1));
      state.dueAt = Date.now() + wait;
      this.#failures.inc(1, name);
      const meanwhile = this.#certificates.has(name)
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
}

/** Renewal time: 30 days before expiry, or when a third of a shorter life is left. */
export function renewalTime(life: { notBefore: number; notAfter: number }): number {
  const before = Math.min(RENEW_BEFORE_MS, (life.notAfter - life.notBefore) / 3);
  return life.notAfter - before;
}

/** The CA's own words when it gave any (acme-client puts its problem detail in the message). */
function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
