// The [[tcp]] tables: which public port carries TCP connections to which agent's named service.
// The agent decides what a name stands for (--tcp NAME=HOST:PORT on the device); the gateway only
// maps its own ports to names.
import { isValidAgentId } from "../../shared/auth.ts";
import { isTable } from "../../shared/config.ts";
import { UsageError } from "../../shared/errors.ts";

export interface TcpRoute {
  /** The public port; 0 picks a free one (tests). */
  port: number;
  agent: string;
  service: string;
}

const KEYS = ["port", "agent", "service"];

/** Reads `[[tcp]]` from the TOML file; every error names the file and the entry's index. */
export function readTcpTables(path: string, value: unknown): TcpRoute[] {
  if (!Array.isArray(value) || !value.every(isTable)) {
    throw new UsageError(`${path}: tcp must be an array of tables, written [[tcp]]`);
  }
  const firstUse = new Map<number, number>();
  return value.map((table, i) => {
    const where = `${path}: tcp[${i}]`;
    const unknown = Object.keys(table).find((key) => !KEYS.includes(key));
    if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${KEYS.join(", ")})`);
    const { port, agent, service } = table;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw new UsageError(`${where}.port must be a port from 1 to 65535 (0 picks a free one)`);
    }
    if (typeof agent !== "string" || !isValidAgentId(agent)) {
      throw new UsageError(`${where}.agent must be an agent id such as pi-kitchen`);
    }
    if (typeof service !== "string" || !isValidAgentId(service)) {
      throw new UsageError(`${where}.service must be a service name the agent serves, such as ssh`);
    }
    const earlier = firstUse.get(port);
    if (earlier !== undefined) {
      throw new UsageError(`${where}.port repeats tcp[${earlier}].port: each port carries one service`);
    }
    if (port !== 0) firstUse.set(port, i);
    return { port, agent, service };
  });
}
