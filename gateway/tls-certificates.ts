// Where both TLS ports get their certificates: the --tls-cert files (read again on SIGHUP) and,
// with [acme], a certificate per host name from the CA. Whenever the set changes, the listeners
// are told to take it up (rotate), at most once per ROTATE_DELAY_MS.
import type { Server, TLSOptions } from "bun";
import { log } from "../shared/log.ts";
import type { MetricRegistry } from "../shared/metrics.ts";
import type { AcmeConfig } from "./acme/config.ts";
import { Challenges, startAcmeHttp } from "./acme/http-listener.ts";
import { AcmeIssuer } from "./acme/issuer.ts";
import { CertificateManager } from "./acme/manager.ts";
import { AcmeStore } from "./acme/store.ts";
import { CertificateSet } from "./certificates.ts";
import type { HostEntry } from "./hosts.ts";
import type { TlsPair } from "./tls.ts";

/** Certificates issued together (agents connecting at start-up) are taken up in one rotation. */
const ROTATE_DELAY_MS = 250;

export interface TlsCertificatesOptions {
  fallback: TlsPair | undefined;
  acme: AcmeConfig | undefined;
  stateDir: string;
  domain: string;
  hosts: HostEntry[];
  bind: string;
  acmeHttpPort: number;
  httpsPort: () => number;
  metrics: MetricRegistry;
}

export class TlsCertificates {
  readonly #set: CertificateSet;
  readonly #domain: string;
  readonly #manager: CertificateManager | undefined;
  readonly #acmeHttp: Server<undefined> | undefined;
  /** Ordered at start: the domain itself (agents dial it), [acme] names, exact [[hosts]] names. */
  readonly #initialNames: string[] = [];
  #rotate: (tls: TLSOptions[]) => void = () => {};
  #pending: Timer | undefined;

  /** Undefined when the gateway serves plain HTTP: neither --tls-cert nor [acme]. */
  static create(options: TlsCertificatesOptions): TlsCertificates | undefined {
    return options.fallback || options.acme ? new TlsCertificates(options) : undefined;
  }

  private constructor(options: TlsCertificatesOptions) {
    this.#set = new CertificateSet(options.fallback);
    this.#domain = options.domain;
    options.metrics.labelledGauge(
      "indranet_tls_certificate_expiry_timestamp_seconds",
      'When each served certificate expires (the --tls-cert pair is name="default")',
      "name",
      () => this.#set.expiries(),
    );
    const failures = options.metrics.counter(
      "indranet_acme_failures_total",
      "Certificate orders and renewals the ACME CA did not complete, by name",
      "name",
    );
    if (!options.acme) return;
    const store = new AcmeStore(options.stateDir, options.acme.directory);
    store.prepare();
    const challenges = new Challenges();
    this.#acmeHttp = startAcmeHttp({
      hostname: options.bind,
      port: options.acmeHttpPort,
      httpsPort: options.httpsPort,
      challenges,
    });
    log.info(`acme: challenges and redirects to https on http://${options.bind}:${this.#acmeHttp.port}`);
    this.#manager = new CertificateManager({
      issuer: new AcmeIssuer(options.acme, store, challenges),
      store,
      certificates: this.#set,
      changed: () => this.#changed(),
      failures,
    });
    this.#initialNames = [options.domain, ...options.acme.names, ...exactHosts(options.hosts)];
  }

  /** What the listeners start with. */
  tls(): TLSOptions[] {
    return this.#set.tls();
  }

  /** Starts ordering, once the listeners that take the certificates up exist. */
  start(rotate: (tls: TLSOptions[]) => void): void {
    this.#rotate = rotate;
    this.#manager?.start(this.#initialNames);
  }

  /** An agent connected: `<id>.<domain>` gets its certificate if it has none. */
  agentArrived(agentId: string): void {
    this.#manager?.want(`${agentId}.${this.#domain}`);
  }

  /** SIGHUP: the --tls-cert files as read again, and the [[hosts]] now configured. */
  reload(fallback: TlsPair | undefined, hosts: HostEntry[]): void {
    if (!fallback && this.#set.hasFallback) {
      log.warn("reload: --tls-cert is no longer set; the running certificate stays until a restart");
    } else if (this.#set.setFallback(fallback)) {
      log.info("tls: the --tls-cert certificate changed, new connections get it");
      this.#changed();
    }
    for (const name of exactHosts(hosts)) this.#manager?.want(name);
  }

  async stop(): Promise<void> {
    clearTimeout(this.#pending);
    this.#manager?.stop();
    await this.#acmeHttp?.stop();
  }

  #changed(): void {
    if (this.#pending) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      try {
        this.#rotate(this.#set.tls());
      } catch (error) {
        log.error(
          `tls: the new certificates could not be taken up, the listeners keep the old ones: ${error}`,
        );
      }
    }, ROTATE_DELAY_MS);
  }
}

/** [[hosts]] names a certificate can be ordered for: wildcards need DNS-01, which is not done. */
function exactHosts(hosts: HostEntry[]): string[] {
  return hosts.filter((host) => !host.name.startsWith("*.")).map((host) => host.name);
}
