// Custom host names: `[[hosts]] name = "kitchen.example.org", agent = "pi-kitchen"` routes a name
// besides `<id>.<domain>` to an agent. `*.kitchen.example.org` matches names any number of labels
// below it (not the name itself); the longest matching wildcard wins. Looked up only when a Host
// is not `<id>.<domain>`: an exact name is one Map lookup, wildcards one per label after it.
import { isValidAgentId } from "../shared/auth.ts";
import { UsageError } from "../shared/errors.ts";
import { matchHostToAgentId } from "./route.ts";

export interface HostEntry {
  /** Lowercase, without a trailing dot; `*.` first for a wildcard. */
  name: string;
  agent: string;
}

const HOST_KEYS = ["name", "agent"];
const WILDCARD = "*.";

export class HostTable {
  readonly #exact = new Map<string, string>();
  /** The name after `*.` → agent id. */
  readonly #wildcards = new Map<string, string>();

  constructor(entries: readonly HostEntry[]) {
    for (const { name, agent } of entries) {
      if (name.startsWith(WILDCARD)) this.#wildcards.set(name.slice(WILDCARD.length), agent);
      else this.#exact.set(name, agent);
    }
  }

  get size(): number {
    return this.#exact.size + this.#wildcards.size;
  }

  /** The agent a Host header names (any letter case, optional port and trailing dot), or null. */
  lookup(host: string | null): string | null {
    if (host === null || this.size === 0) return null;
    const name = hostName(host);
    if (name === null) return null;
    const exact = this.#exact.get(name);
    if (exact !== undefined || this.#wildcards.size === 0) return exact ?? null;
    for (let dot = name.indexOf("."); dot !== -1; dot = name.indexOf(".", dot + 1)) {
      const agent = this.#wildcards.get(name.slice(dot + 1));
      if (agent !== undefined) return agent;
    }
    return null;
  }
}

/** The name of a Host header, lowercase, without port or trailing dot; null for an IP literal. */
function hostName(host: string): string | null {
  if (host.startsWith("[")) return null;
  const colon = host.indexOf(":");
  let name = colon === -1 ? host : host.slice(0, colon);
  if (name.endsWith(".")) name = name.slice(0, -1);
  return name === "" ? null : name.toLowerCase();
}

/** The [[hosts]] array of the file; a name given twice names both entries. */
export function readHosts(path: string, value: unknown): HostEntry[] {
  if (!Array.isArray(value) || !value.every(isTable)) {
    throw new UsageError(`${path}: hosts must be an array of tables, written [[hosts]]`);
  }
  const seen = new Map<string, { index: number; agent: string }>();
  return value.map((table, i) => {
    const where = `${path}: hosts[${i}]`;
    const unknown = Object.keys(table).find((key) => !HOST_KEYS.includes(key));
    if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${HOST_KEYS.join(", ")})`);
    const name = typeof table.name === "string" ? normalName(table.name) : undefined;
    if (name === undefined) {
      throw new UsageError(
        `${where}.name must be a host name such as kitchen.example.org, or *.kitchen.example.org`,
      );
    }
    const { agent } = table;
    if (typeof agent !== "string" || !isValidAgentId(agent)) {
      throw new UsageError(`${where}.agent must be an agent id (lowercase a-z, 0-9 and '-')`);
    }
    const earlier = seen.get(name);
    if (earlier) {
      const first = `hosts[${earlier.index}]`;
      throw new UsageError(
        earlier.agent === agent
          ? `${where}.name '${name}' repeats ${first}.name: give each name once`
          : `${where}.name '${name}' is claimed by agent '${agent}' here and by '${earlier.agent}' in ${first}`,
      );
    }
    seen.set(name, { index: i, agent });
    return { name, agent };
  });
}

/** A name `<id>.<domain>` already routes to that agent: a host entry may not take it elsewhere. */
export function checkHostsAgainstDomain(path: string, hosts: readonly HostEntry[], domain: string): void {
  hosts.forEach(({ name, agent }, i) => {
    const owner = matchHostToAgentId(name, domain);
    if (owner !== null && owner !== agent) {
      throw new UsageError(
        `${path}: hosts[${i}].name '${name}' is agent '${owner}'s own name under ${domain}, not '${agent}'s`,
      );
    }
  });
}

function normalName(text: string): string | undefined {
  const name = (text.endsWith(".") ? text.slice(0, -1) : text).toLowerCase();
  const labels = name.startsWith(WILDCARD) ? name.slice(WILDCARD.length) : name;
  // Each label of a host name obeys the same rule as an agent id.
  return name.length <= 253 && labels.split(".").every(isValidAgentId) ? name : undefined;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
