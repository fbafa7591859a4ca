// The agents connected now, one row per session (an agent reconnecting shows twice).
import type { AgentEntry } from "./api.ts";
import { byId, h } from "./dom.ts";
import { bytes } from "./format.ts";

export function renderAgents(agents: AgentEntry[]): void {
  const rows = byId<HTMLTableSectionElement>("agent-rows");
  if (agents.length === 0) {
    rows.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No agent is connected.")));
    return;
  }
  rows.replaceChildren(
    ...agents.map((a) =>
      h(
        "tr",
        {},
        h("td", {}, a.id),
        h("td", { title: a.connected_since }, new Date(a.connected_since).toLocaleString()),
        h("td", { class: "num" }, String(a.streams)),
        h("td", { class: "num" }, bytes(a.bytes_in)),
        h("td", { class: "num" }, bytes(a.bytes_out)),
      ),
    ),
  );
}
