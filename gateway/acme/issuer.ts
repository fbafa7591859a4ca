// One certificate for one name from an ACME CA, by the HTTP-01 challenge, through acme-client.
// The account key is made once and kept in the state dir; each certificate gets a fresh ECDSA key.
import https from "node:https";
import * as acme from "acme-client";
import { log } from "../../shared/log.ts";
import type { TlsPair } from "../tls.ts";
import type { AcmeConfig } from "./config.ts";
import type { Challenges } from "./http-listener.ts";
import type { Issuer } from "./manager.ts";
import type { AcmeStore } from "./store.ts";

export class AcmeIssuer implements Issuer {
  readonly #config: AcmeConfig;
  readonly #store: AcmeStore;
  readonly #challenges: Challenges;
  /** Registered on the first order, and again after an order failed. */
  #client: Promise<acme.Client> | undefined;

  constructor(config: AcmeConfig, store: AcmeStore, challenges: Challenges) {
    this.#config = config;
    this.#store = store;
    this.#challenges = challenges;
    // acme-client's own debug output goes to the gateway's log at debug level.
    acme.setLogger((message) => log.debug(`acme-client: ${message}`));
    // The manager retries with its own growing delay; the library's five retries of a failed
    // connection would hold an order for over a minute first.
    (
      acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }
    ).acmeSettings.retryMaxAttempts = 0;
    // A CA that accepts the connection and never answers would otherwise hold an order forever.
    acme.axios.defaults.timeout = 30_000;
    if (config.ca) acme.axios.defaults.httpsAgent = new https.Agent({ ca: config.ca });
    passConnectionErrorsThrough();
  }

  async issue(name: string): Promise<TlsPair> {
    try {
      return await this.#issue(await this.#account(), name);
    } catch (error) {
      // The next try registers again: a CA that lost or deactivated the account gets a new one
      // for the same key (newAccount answers with the existing account when there is one).
      this.#client = undefined;
      throw error;
    }
  }

  async #issue(client: acme.Client, name: string): Promise<TlsPair> {
    const [key, csr] = await acme.crypto.createCsr(
      { altNames: [name] },
      await acme.crypto.createPrivateEcdsaKey(),
    );
    const cert = await client.auto({
      csr,
      email: this.#config.email,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // The library would first fetch the challenge itself through this host's DNS, which may
      // not see the public name (split DNS, a private CA's test names); the CA's check is the one that counts.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        this.#challenges.add(challenge.token, keyAuthorization);
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.#challenges.remove(challenge.token);
      },
    });
    return { cert, key: key.toString() };
  }

  /** A client on the stored account key (made and stored on the first order ever), registered once per process. */
  #account(): Promise<acme.Client> {
    this.#client ??= this.#register();
    return this.#client;
  }

  async #register(): Promise<acme.Client> {
    let accountKey = this.#store.readAccountKey();
    if (!accountKey) {
      accountKey = (await acme.crypto.createPrivateEcdsaKey()).toString();
      this.#store.writeAccountKey(accountKey);
      log.info(`acme: account key created in ${this.#store.path}`);
    }
    const client = new acme.Client({
      directoryUrl: this.#config.directory,
      accountKey,
      // Poll an order's status every 1 to 10 s (the library starts at 5 s).
      backoffAttempts: 20,
      backoffMin: 1_000,
      backoffMax: 10_000,
    });
    await client.createAccount({ termsOfServiceAgreed: true, contact: [`mailto:${this.#config.email}`] });
    log.info(`acme: account ${client.getAccountUrl()} for ${this.#config.email}`);
    return client;
  }
}

/**
 * acme-client 5.4's retry handler reads `error.response.config` even when there is no response
 * (connection refused, a certificate that does not verify), so the real error became a TypeError.
 * Errors without a response go straight through instead, with their own message.
 */
function passConnectionErrorsThrough(): void {
  type Handler = { rejected?: (error: { response?: unknown }) => unknown; patched?: boolean };
  const handlers = (acme.axios.interceptors.response as unknown as { handlers?: Handler[] }).handlers;
  const retry = handlers?.[0];
  if (!retry?.rejected || retry.patched) return;
  const original = retry.rejected;
  retry.rejected = (error) => (error?.response ? original(error) : Promise.reject(error));
  retry.patched = true;
}
