// The filter bar above the request list. The API filters the list it returns (agent, status,
// method, path); the feed sends everything, so the same test runs here on each new exchange,
// and the minimum duration, which the API does not know, runs here on both.
import type { Summary } from "./api.ts";
import { byId, h } from "./dom.ts";

export interface Filter {
  agent: string;
  /** An exact status ("404") or a class ("5xx"). */
  status: string;
  method: string;
  path: string;
  minMs: number;
}

export class FilterBar {
  readonly #form = byId<HTMLFormElement>("filters");
  readonly #agents = byId<HTMLSelectElement>("filter-agent");
  readonly #known = new Set<string>();

  constructor(onChange: () => void) {
    this.#form.addEventListener("input", onChange);
    this.#form.addEventListener("submit", (event) => event.preventDefault());
  }

  get value(): Filter {
    const data = new FormData(this.#form);
    const text = (name: string) => String(data.get(name) ?? "").trim();
    return {
      agent: text("agent"),
      status: text("status").toLowerCase(),
      method: text("method").toUpperCase(),
      path: text("path"),
      minMs: Number(text("min_ms")) || 0,
    };
  }

  /** The agent choices grow as agents connect or appear in the list; the choice made stays. */
  learnAgents(ids: Iterable<string>): void {
    const before = this.#known.size;
    for (const id of ids) this.#known.add(id);
    if (this.#known.size === before) return;
    const chosen = this.#agents.value;
    this.#agents.replaceChildren(
      h("option", { value: "" }, "all"),
      ...[...this.#known].sort().map((id) => h("option", { value: id }, id)),
    );
    this.#agents.value = chosen;
  }
}

/** The part of the filter the API applies, as its query string. */
export function apiQuery(filter: Filter, limit: number): URLSearchParams {
  const query = new URLSearchParams({ limit: String(limit) });
  for (const name of ["agent", "status", "method", "path"] as const) {
    if (filter[name] !== "") query.set(name, filter[name]);
  }
  return query;
}

export function matches(s: Summary, filter: Filter): boolean {
  if (filter.agent !== "" && s.agent !== filter.agent) return false;
  if (filter.method !== "" && s.method !== filter.method) return false;
  if (filter.path !== "" && !s.path.includes(filter.path)) return false;
  if (s.duration_ms < filter.minMs) return false;
  return filter.status === "" || statusIs(s.status, filter.status);
}

function statusIs(status: number, wanted: string): boolean {
  const digit = /^([1-5])xx$/.exec(wanted)?.[1];
  return digit ? String(status).startsWith(digit) : String(status) === wanted;
}
