import { describe, expect, test } from "bun:test";
import { type AgentEntry, formatAgents } from "./admin.ts";

const NOW = Date.parse("2025-01-01T12:00:00Z");

function entry(id: string, connectedSecondsAgo: number): AgentEntry {
  return {
    id,
    session: `s-${id}`,
    remote_address: "203.0.113.7",
    version: "1.0.0",
    connected_since: new Date(NOW - connectedSecondsAgo * 1000).toISOString(),
    last_seen: new Date(NOW - 2000).toISOString(),
    streams: 1,
    bytes_in: 2048,
    bytes_out: 512,
  };
}

describe("gateway-tunnel agents", () => {
  test("prints one aligned row per session, sorted by id", () => {
    const table = formatAgents([entry("pi-b", 3 * 3600 + 120), entry("pi-a", 75)], NOW);
    expect(table.split("\n")).toEqual([
      "ID    REMOTE       CONNECTED  LAST SEEN  STREAMS  BYTES IN  BYTES OUT",
      "pi-a  203.0.113.7  1m15s ago  2s ago     1        2048      512",
      "pi-b  203.0.113.7  3h02m ago  2s ago     1        2048      512",
      "",
    ]);
  });

  test("says so when no agent is connected", () => {
    expect(formatAgents([], NOW)).toBe("no agents connected\n");
  });
});
