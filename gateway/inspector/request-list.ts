// The list of exchanges, newest first: what the API returned for the filter in force, then
// whatever the feed adds that passes it.
import type { Summary } from "./api.ts";
import { byId, h } from "./dom.ts";
import { type Filter, matches } from "./filters.ts";
import { bytes, clock, ms, statusClass } from "./format.ts";

/** Rows kept on the page; the gateway's ring holds the rest. */
export const LIST_LIMIT = 500;

export class RequestList {
  readonly #body = byId<HTMLTableSectionElement>("request-rows");
  readonly #count = byId("request-count");
  readonly #onSelect: (id: string) => void;
  #rows: Summary[] = [];
  #selected: string | null = null;

  constructor(onSelect: (id: string) => void) {
    this.#onSelect = onSelect;
  }

  replace(rows: Summary[], filter: Filter): void {
    this.#rows = rows.filter((s) => matches(s, filter)).slice(0, LIST_LIMIT);
    this.#render();
  }

  /** From the feed: an exchange that just finished. */
  add(summary: Summary, filter: Filter): void {
    if (!matches(summary, filter) || this.#rows.some((s) => s.id === summary.id)) return;
    this.#rows.unshift(summary);
    this.#rows.length = Math.min(this.#rows.length, LIST_LIMIT);
    this.#render();
  }

  select(id: string | null): void {
    this.#selected = id;
    for (const row of this.#body.rows) row.classList.toggle("selected", row.dataset.id === id);
  }

  #render(): void {
    this.#body.replaceChildren(...this.#rows.map((s) => this.#row(s)));
    this.#count.textContent = `${this.#rows.length} shown`;
  }

  #row(s: Summary): HTMLTableRowElement {
    const select = () => this.#onSelect(s.id);
    return h(
      "tr",
      { "data-id": s.id, class: s.id === this.#selected ? "selected" : undefined, onclick: select },
      h("td", { class: "num", title: s.started_at }, clock(s.started_at)),
      h("td", { class: "clip", title: s.agent }, s.agent),
      h("td", {}, s.method),
      h(
        "td",
        { class: "path" },
        h("button", { type: "button", class: "link", title: s.path }, s.replay_of ? "↻ " : "", s.path),
        s.error && h("small", { class: "error" }, `gateway: ${s.error}`),
      ),
      h("td", { class: statusClass(s.status) }, String(s.status)),
      h("td", { class: "num" }, ms(s.duration_ms)),
      h("td", { class: "num" }, bytes(s.response_bytes)),
    );
  }
}
