// The connected agents as the admin API lists them (`GET /api/agents`), and the table
// `gateway-tunnel agents` prints from that list.
import { type AdminTarget, adminGet } from "./admin-client.ts";
import type { ClusterDirectory } from "./cluster/directory.ts";
import type { SessionRegistry } from "./sessions.ts";

/** One session of one agent; an id connected twice (a reconnect in progress) has two entries. */
export interface AgentEntry {
  id: string;
  session: string;
  remote_address: string;
  version: string;
  connected_since: string;
  last_seen: string;
  streams: number;
  bytes_in: number;
  bytes_out: number;
  /** In a cluster: the id of the gateway holding this session (this one). */
  gateway?: string;
}

export function agentList(registry: SessionRegistry, gatewayId?: string): AgentEntry[] {
  return registry.all().map((s) => ({
    ...(gatewayId ? { gateway: gatewayId } : {}),
    id: s.info.agentId,
    session: s.id,
    remote_address: s.info.remoteAddress,
    version: s.info.agentVersion,
    connected_since: new Date(s.connectedAt).toISOString(),
    last_seen: new Date(s.lastSeen).toISOString(),
    streams: s.streams.size,
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
  }));
}

/** `GET /api/cluster`: this gateway, its peers, and which gateways hold each agent. */
export async function clusterView(directory: ClusterDirectory | undefined): Promise<unknown> {
  if (!directory) return { clustered: false };
  const available = directory.available;
  return {
    clustered: true,
    gateway: directory.gatewayId,
    redis: available ? "up" : "down",
    gateways: available ? directory.liveGateways : [],
    agents: available ? await directory.agents().catch(() => ({})) : {},
  };
}

export async function fetchAgents(target: AdminTarget): Promise<AgentEntry[]> {
  return (await (await adminGet(target, "/api/agents")).json()) as AgentEntry[];
}

export function formatAgents(agents: AgentEntry[], now = Date.now()): string {
  if (agents.length === 0) return "no agents connected\n";
  const rows = [
    ["ID", "REMOTE", "CONNECTED", "LAST SEEN", "STREAMS", "BYTES IN", "BYTES OUT"],
    ...[...agents]
      .sort((a, b) => a.id.localeCompare(b.id) || a.connected_since.localeCompare(b.connected_since))
      .map((a) => [
        a.id,
        a.remote_address,
        `${age(now - Date.parse(a.connected_since))} ago`,
        `${age(now - Date.parse(a.last_seen))} ago`,
        String(a.streams),
        String(a.bytes_in),
        String(a.bytes_out),
      ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length))) ?? [];
  const lines = rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n`;
}

function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, "0")}h`;
}
