// Which requests reach an agent: its table of access rules, checked in the ingress before any
// stream is opened, so a refused request costs the agent nothing. The checks run cheapest first:
// the address lists, then the rate (which also bounds password guessing), then the password.
import { agentIdAllowed } from "../../shared/auth.ts";
import { type IngressError, type IngressErrorCode, ingressError } from "../errors.ts";
import { BasicAuth } from "./basic-auth.ts";
import { CidrList, parseAddress } from "./cidr.ts";
import { clientAddress } from "./client-address.ts";
import type { AccessRule } from "./config.ts";
import { RateLimiter } from "./rate-limit.ts";

/** Agent ids whose table has been looked up; past it the memory starts over. */
const MAX_RESOLVED = 4_096;

type Refusal = IngressError | undefined;

/** What the check needs of the ingress server: the socket's address. */
export interface AddressSource {
  requestIP(req: Request): { address: string } | null;
}

/** One table's rules, live: its address lists, rate buckets and verified passwords. */
export class AccessPolicy {
  readonly pattern: string;
  readonly #allow: CidrList;
  readonly #deny: CidrList;
  readonly #limiter: RateLimiter | undefined;
  readonly #auth: BasicAuth | undefined;

  constructor(rule: AccessRule) {
    this.pattern = rule.pattern;
    this.#allow = new CidrList(rule.allow);
    this.#deny = new CidrList(rule.deny);
    this.#limiter = rule.rate ? new RateLimiter(rule.rate) : undefined;
    this.#auth = rule.users.length > 0 ? new BasicAuth(rule.users) : undefined;
  }

  /** Whether the address lists let `client` in (deny first, then allow when it lists any). */
  admits(client: string): boolean {
    if (this.#allow.empty && this.#deny.empty) return true;
    const address = parseAddress(client);
    // An address that does not parse (a proxy that wrote `ip:port`) is never let past a list.
    if (address === undefined) return false;
    return !this.#deny.contains(address) && (this.#allow.empty || this.#allow.contains(address));
  }

  /** The refusal for a request from `client` to `agentId`, if any; the Authorization header is taken. */
  check(agentId: string, req: Request, client: string, nowMs: number): Refusal | Promise<Refusal> {
    if (!this.admits(client)) return ingressError("forbidden", client);
    if (this.#limiter) {
      const wait = this.#limiter.take(`${agentId} ${client}`, nowMs);
      if (wait > 0) return ingressError("rate_limited", undefined, { "retry-after": String(wait) });
    }
    if (!this.#auth) return undefined;
    const header = req.headers.get("authorization");
    // The credentials are the gateway's business: the service never sees them.
    req.headers.delete("authorization");
    const result = this.#auth.check(header, nowMs);
    return result instanceof Promise ? result.then((r) => refusal(r, agentId)) : refusal(result, agentId);
  }
}

function refusal(result: "ok" | "denied" | "busy", agentId: string): Refusal {
  if (result === "ok") return undefined;
  if (result === "busy")
    return ingressError("rate_limited", "too many password checks at once", { "retry-after": "1" });
  return ingressError("unauthorized", undefined, { "www-authenticate": `Basic realm="${agentId}"` });
}

/**
 * Every agent table's policy and which one applies to an agent id: the table named by the exact
 * id, else the matching pattern with the most characters besides `*`, the first in the file on a
 * tie. Tables do not combine. Replaced as a whole on reload, buckets and verified passwords too.
 */
export class AccessControl {
  readonly #trustedProxies: CidrList;
  readonly #onRefused: (code: IngressErrorCode) => void;
  #exact = new Map<string, AccessPolicy>();
  #patterns: AccessPolicy[] = [];
  #resolved = new Map<string, AccessPolicy | null>();

  constructor(
    rules: readonly AccessRule[],
    trustedProxies: CidrList,
    onRefused: (code: IngressErrorCode) => void,
  ) {
    this.#trustedProxies = trustedProxies;
    this.#onRefused = onRefused;
    this.replace(rules);
  }

  get size(): number {
    return this.#exact.size + this.#patterns.length;
  }

  replace(rules: readonly AccessRule[]): void {
    const policies = rules.map((rule) => new AccessPolicy(rule));
    this.#exact = new Map(policies.filter((p) => !p.pattern.includes("*")).map((p) => [p.pattern, p]));
    this.#patterns = policies
      .filter((p) => p.pattern.includes("*"))
      // Array.prototype.sort is stable: equally long patterns keep the file's order.
      .sort((a, b) => literalLength(b.pattern) - literalLength(a.pattern));
    this.#resolved = new Map();
  }

  /** The policy that applies to `agentId`, or undefined when nothing restricts its requests. */
  policyFor(agentId: string): AccessPolicy | undefined {
    const exact = this.#exact.get(agentId);
    if (exact !== undefined || this.#patterns.length === 0) return exact;
    let policy = this.#resolved.get(agentId);
    if (policy === undefined) {
      policy = this.#patterns.find((p) => agentIdAllowed([p.pattern], agentId)) ?? null;
      // Host names route any label to an id: a flood of made-up ones must not grow this map.
      if (this.#resolved.size >= MAX_RESOLVED) this.#resolved.clear();
      this.#resolved.set(agentId, policy);
    }
    return policy ?? undefined;
  }

  /**
   * Undefined when the request may go on, at once; else its refusal, or a promise of the verdict
   * while a password is verified. Each refusal is counted by its code.
   */
  check(agentId: string, req: Request, server: AddressSource): Refusal | Promise<Refusal> {
    const policy = this.policyFor(agentId);
    if (!policy) return undefined;
    const socket = server.requestIP(req)?.address ?? "";
    const client = clientAddress(socket, req.headers.get("x-forwarded-for"), this.#trustedProxies);
    const verdict = policy.check(agentId, req, client, Date.now());
    if (verdict instanceof Promise) return verdict.then((r) => this.#counted(r));
    return this.#counted(verdict);
  }

  /**
   * For a TCP connection to one of `agentId`'s services: only the address lists apply (there is
   * no header to carry a password, and no proxy in front to trust). Refusals are counted.
   */
  admitsConnection(agentId: string, socketAddress: string): boolean {
    const policy = this.policyFor(agentId);
    if (!policy || policy.admits(socketAddress)) return true;
    this.#onRefused("forbidden");
    return false;
  }

  #counted(refusal: Refusal): Refusal {
    if (refusal) this.#onRefused(refusal.code);
    return refusal;
  }
}

function literalLength(pattern: string): number {
  return pattern.replaceAll("*", "").length;
}
