// The selected exchange in full: what was asked and answered, sizes and timings, both heads and
// bodies, a search over the headers, and the two ways to send it again.
import type { Detail, HeaderList, ReplayChanges } from "./api.ts";
import { bodyView } from "./body.ts";
import { byId, h } from "./dom.ts";
import { bytes, ms, statusClass } from "./format.ts";
import { replayForm } from "./replay-form.ts";

export interface DetailActions {
  replay: (id: string, changes?: ReplayChanges) => void;
  select: (id: string) => void;
}

export class DetailPane {
  readonly #pane = byId("detail");
  readonly #actions: DetailActions;

  constructor(actions: DetailActions) {
    this.#actions = actions;
  }

  /** A line in place of the detail: nothing selected, loading, or why it failed. */
  message(text: string): void {
    this.#pane.replaceChildren(h("p", { class: "muted", role: "status" }, text));
  }

  show(d: Detail): void {
    const editor = h("div");
    const toggleEditor = () => {
      const open = editor.firstChild === null;
      editor.replaceChildren(
        ...(open ? [replayForm(d, (changes) => this.#actions.replay(d.id, changes))] : []),
      );
      edit.setAttribute("aria-expanded", String(open));
    };
    const edit = h(
      "button",
      { type: "button", "aria-expanded": "false", onclick: toggleEditor },
      "Edit & replay",
    );
    const search = h("input", { type: "search", id: "header-search", placeholder: "name or value" });
    search.addEventListener("input", () => filterHeaders(this.#pane, search.value));
    this.#pane.replaceChildren(
      h("h2", {}, `${d.method} `, h("span", { class: "path" }, d.path), " ", statusBadge(d.status)),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => this.#actions.replay(d.id) }, "Replay"),
        edit,
      ),
      editor,
      facts(d, this.#actions.select),
      h("p", { class: "search" }, h("label", { for: "header-search" }, "Find in headers "), search),
      h("h3", {}, "Request"),
      headerTable(d.request.headers, "Request headers"),
      bodyView(d.request.body, d.request.headers),
      h("h3", {}, "Response"),
      ...(d.response
        ? [headerTable(d.response.headers, "Response headers"), bodyView(d.response.body, d.response.headers)]
        : [h("p", { class: "muted" }, "No response head was received.")]),
    );
  }
}

function statusBadge(status: number): HTMLElement {
  return h("span", { class: statusClass(status) }, String(status));
}

function facts(d: Detail, select: (id: string) => void): HTMLElement {
  const rows: [string, Node | string][] = [
    ["Request id", d.id],
    ["Agent", d.agent],
    ["Client", d.client_ip],
    ["Started", new Date(d.started_at).toLocaleString()],
    ["Sizes", `request ${bytes(d.request_bytes)}, response ${bytes(d.response_bytes)}`],
    ["Timing", timing(d)],
  ];
  if (d.error) rows.splice(1, 0, ["Gateway error", h("code", { class: "error" }, d.error)]);
  const original = d.replay_of;
  if (original) {
    rows.push([
      "Replay of",
      h("button", { type: "button", class: "link", onclick: () => select(original) }, original),
    ]);
  }
  return h(
    "dl",
    { class: "facts" },
    ...rows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

function timing(d: Detail): string {
  const { sent_ms, head_ms, last_byte_ms } = d.timing;
  return `request sent ${ms(sent_ms)}, head ${ms(head_ms)}, last byte ${ms(last_byte_ms)}, total ${ms(d.duration_ms)}`;
}

function headerTable(headers: HeaderList, caption: string): HTMLElement {
  return h(
    "table",
    { class: "headers" },
    h("caption", { class: "visually-hidden" }, caption),
    h(
      "tbody",
      {},
      ...headers.map(([name, value]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, value))),
    ),
  );
}

/** Hides the header lines whose name and value both lack the text. */
function filterHeaders(pane: HTMLElement, text: string): void {
  const wanted = text.trim().toLowerCase();
  for (const row of pane.querySelectorAll<HTMLTableRowElement>("table.headers tr")) {
    row.hidden = wanted !== "" && !(row.textContent ?? "").toLowerCase().includes(wanted);
  }
}
