// Where both TLS ports get their certificates: the --tls-cert files (read again on SIGHUP) and,
// with [acme], a certificate per host name from the CA. Whenever the set changes, the listeners
// are told to take it up (rotate): the ingress for any name, the agent port only when a name agents
// dial changed, so that agents' long-lived connections pin as few old listeners as possible.
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

/** Rotations come at least this far apart: each old listener lives until its last connection ends. */
const MIN_ROTATION_GAP_MS = 1_000;

export interface TlsCertificatesOptions {
  fallback: TlsPair | undefined;
  acme: AcmeConfig | undefined;
  stateDir: string;
  domain: string;
  hosts: HostEntry[];
  bind: string;
  acmeHttpPort: number;
  httpsPort: () => number;
  /** True while an agent with this id is connected here. */
  agentConnected: (agentId: string) => boolean;
  metrics: MetricRegistry;
}

export interface Rotations {
  ingress: (tls: TLSOptions[]) => void;
  agents: (tls: TLSOptions[]) => void;
}

export class TlsCertificates {
  readonly #set: CertificateSet;
  readonly #domain: string;
  /** The names agents dial: the domain and [acme] names. */
  readonly #agentNames: Set<string>;
  readonly #acme: AcmeConfig | undefined;
  readonly #manager: CertificateManager | undefined;
  readonly #acmeHttp: Server<undefined> | undefined;
  /** The names ordered at start and kept while configured. */
  #fixed: string[] = [];
  #rotations: Rotations | undefined;
  #pending: Timer | undefined;
  #ingressStale = false;
  #agentsStale = false;
  #lastRotation = 0;
  #stopped = false;

  /** Undefined when the gateway serves plain HTTP: neither --tls-cert nor [acme]. */
  static create(options: TlsCertificatesOptions): TlsCertificates | undefined {
    return options.fallback || options.acme ? new TlsCertificates(options) : undefined;
  }

  private constructor(options: TlsCertificatesOptions) {
    const acme = options.acme;
    this.#acme = acme;
    this.#set = new CertificateSet(options.fallback, acme !== undefined);
    this.#domain = options.domain;
    this.#agentNames = new Set([options.domain, ...(acme?.names ?? [])]);
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
    if (!acme) return;
    const store = new AcmeStore(options.stateDir, acme.directory);
    store.prepare();
    const challenges = new Challenges();
    this.#acmeHttp = startAcmeHttp({
      hostname: options.bind,
      port: options.acmeHttpPort,
      httpsPort: options.httpsPort,
      challenges,
    });
    log.info(`acme: challenges and redirects to https on http://${options.bind}:${this.#acmeHttp.port}`);
    const suffix = `.${options.domain}`;
    this.#manager = new CertificateManager({
      issuer: new AcmeIssuer(acme, store, challenges),
      store,
      certificates: this.#set,
      changed: (name) => this.#changed(name),
      failures,
      inUse: (name) => name.endsWith(suffix) && options.agentConnected(name.slice(0, -suffix.length)),
    });
    // Before the listeners open, so that a restart serves what it had from its first connection.
    this.#manager.load();
    this.#fixed = fixedNames(options.domain, acme, options.hosts);
  }

  /** What the ingress starts with. */
  tls(): TLSOptions[] {
    return this.#set.tls();
  }

  /** What the agent port starts with: the names agents dial and the --tls-cert pair. */
  agentTls(): TLSOptions[] {
    return this.#set.tls((name) => this.#agentNames.has(name));
  }

  /** Starts ordering, once the listeners that take the certificates up exist. */
  start(rotations: Rotations): void {
    this.#rotations = rotations;
    this.#manager?.setFixed(this.#fixed);
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
      this.#changed(undefined);
    }
    if (this.#acme) this.#manager?.setFixed(fixedNames(this.#domain, this.#acme, hosts));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#pending);
    this.#manager?.stop();
    await this.#acmeHttp?.stop();
  }

  /** A name's certificate changed; undefined for the --tls-cert pair, which both ports serve. */
  #changed(name: string | undefined): void {
    if (this.#stopped) return;
    this.#ingressStale = true;
    if (name === undefined || this.#agentNames.has(name)) this.#agentsStale = true;
    if (this.#pending) return;
    const wait = Math.max(ROTATE_DELAY_MS, this.#lastRotation + MIN_ROTATION_GAP_MS - Date.now());
    this.#pending = setTimeout(() => this.#rotate(), wait);
  }

  #rotate(): void {
    this.#pending = undefined;
    if (this.#stopped || !this.#rotations) return;
    this.#lastRotation = Date.now();
    try {
      if (this.#ingressStale) this.#rotations.ingress(this.tls());
      this.#ingressStale = false;
      if (this.#agentsStale) this.#rotations.agents(this.agentTls());
      this.#agentsStale = false;
    } catch (error) {
      log.error(`tls: the new certificates could not be taken up, trying again shortly: ${error}`);
      this.#pending = setTimeout(() => this.#rotate(), MIN_ROTATION_GAP_MS);
    }
  }
}

/** Ordered at start: the domain (agents dial it), [acme] names, and exact [[hosts]] names. */
function fixedNames(domain: string, acme: AcmeConfig, hosts: HostEntry[]): string[] {
  // A wildcard needs DNS-01, which is not done: --tls-cert serves those.
  const exact = hosts.filter((host) => !host.name.startsWith("*.")).map((host) => host.name);
  return [domain, ...acme.names, ...exact];
}
