// The certificates both TLS ports serve, chosen by the name the client asks for (SNI): one per
// host name obtained from the ACME CA, and the --tls-cert pair for the other names.
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { TLSOptions } from "bun";
import type { TlsPair } from "./tls.ts";

/**
 * Served to a client whose name has no certificate when there is no --tls-cert pair: it holds no
 * certificate, so that handshake fails instead of showing the client another host's certificate.
 */
const NO_CERTIFICATE = "no-certificate.invalid";

/** A pair and its expiry (ms since the epoch; NaN when the certificate does not parse). */
interface Held extends TlsPair {
  notAfter: number;
  /** The certificate's DNS names, `*.` wildcards included. */
  names: string[];
}

export class CertificateSet {
  #fallback: Held | undefined;
  readonly #byName = new Map<string, Held>();
  /**
   * With ACME, the --tls-cert pair is served only to the names it holds, so that a name whose own
   * certificate is not there yet never gets a certificate for other names; without, to every name.
   */
  readonly #fallbackByName: boolean;

  constructor(fallback: TlsPair | undefined, fallbackByName: boolean) {
    this.#fallback = fallback && held(fallback);
    this.#fallbackByName = fallbackByName;
  }

  /** The --tls-cert pair, replaced when SIGHUP reads the files again; true when it changed. */
  setFallback(pair: TlsPair | undefined): boolean {
    if (samePair(pair, this.#fallback)) return false;
    this.#fallback = pair && held(pair);
    return true;
  }

  /** A host name's own certificate (a renewal replaces the last); true when it changed. */
  set(name: string, pair: TlsPair): boolean {
    if (samePair(pair, this.#byName.get(name))) return false;
    this.#byName.set(name, held(pair));
    return true;
  }

  get hasFallback(): boolean {
    return this.#fallback !== undefined;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  get(name: string): TlsPair | undefined {
    return this.#byName.get(name);
  }

  /** Each name's expiry in seconds since the epoch, the --tls-cert pair as "default", for /metrics. */
  *expiries(): Generator<[string, number]> {
    if (this.#fallback) yield ["default", this.#fallback.notAfter / 1000];
    for (const [name, { notAfter }] of this.#byName) yield [name, notAfter / 1000];
  }

  get size(): number {
    return this.#byName.size;
  }

  /**
   * What Bun.serve takes as `tls`: the default entry first (Bun gives it to every name without an
   * entry of its own), then one entry per name; `only` keeps some of the named ones.
   */
  tls(only: (name: string) => boolean = () => true): TLSOptions[] {
    const fallback = this.#fallback;
    const first: TLSOptions =
      fallback && !this.#fallbackByName
        ? { cert: fallback.cert, key: fallback.key }
        : { serverName: NO_CERTIFICATE };
    const entries: TLSOptions[] = [first];
    for (const [serverName, { cert, key }] of this.#byName) {
      if (only(serverName)) entries.push({ serverName, cert, key });
    }
    // An exact name wins over a wildcard in Bun's SNI lookup, so ACME's own certificates stay first choice.
    if (fallback && this.#fallbackByName) {
      for (const serverName of fallback.names) {
        if (!this.#byName.has(serverName))
          entries.push({ serverName, cert: fallback.cert, key: fallback.key });
      }
    }
    return entries;
  }
}

function held(pair: TlsPair): Held {
  return {
    cert: pair.cert,
    key: pair.key,
    notAfter: validity(pair.cert)?.notAfter ?? Number.NaN,
    names: dnsNames(pair.cert),
  };
}

function dnsNames(pem: string): string[] {
  try {
    const names = new X509Certificate(pem).subjectAltName ?? "";
    return [...names.matchAll(/DNS:([^,\s]+)/g)].map((match) => (match[1] ?? "").toLowerCase());
  } catch {
    return [];
  }
}

/** Why `key` cannot serve `cert`, or undefined when it is the certificate's own private key. */
export function pairProblem(pair: TlsPair): string | undefined {
  try {
    const cert = new X509Certificate(pair.cert);
    return cert.checkPrivateKey(createPrivateKey(pair.key))
      ? undefined
      : "the key does not belong to the certificate";
  } catch (error) {
    return `it does not parse (${error instanceof Error ? error.message : error})`;
  }
}

function samePair(a: TlsPair | undefined, b: TlsPair | undefined): boolean {
  return a?.cert === b?.cert && a?.key === b?.key;
}

/** The validity of a PEM chain's first certificate, in ms since the epoch; undefined when it does not parse. */
export function validity(pem: string | undefined): { notBefore: number; notAfter: number } | undefined {
  if (!pem) return undefined;
  try {
    const cert = new X509Certificate(pem);
    return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
  } catch {
    return undefined;
  }
}
