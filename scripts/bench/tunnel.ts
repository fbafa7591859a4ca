// This tunnel's row: the gateway and the agent as a user runs them (the compiled binaries from
// dist/), or from source under `bun --cpu-prof` for the profile.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Child, Children } from "./procs.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const AGENT_ID = "bench";
export const DOMAIN = "bench.test";

/** How to start one side: the command before `serve` / `connect`. */
export type Launcher = (side: "gateway" | "agent") => string[];

export const fromDist: Launcher = (side) => [join(ROOT, "dist", `${side}-tunnel-linux-${distArch()}`)];

/** From source under the CPU profiler; each side writes its .cpuprofile into `dir` on exit. */
export const profiled =
  (dir: string): Launcher =>
  (side) => [
    process.execPath,
    "--cpu-prof",
    `--cpu-prof-dir=${dir}`,
    `--cpu-prof-name=${side}.cpuprofile`,
    join(ROOT, side, "main.ts"),
  ];

function distArch(): string {
  if (process.arch === "x64" || process.arch === "arm64") return process.arch;
  throw new Error(`no binary for ${process.arch}`);
}

export interface Tunnel {
  gateway: Child;
  agent: Child;
  /** The gateway's HTTP port and the Host header that routes to the agent. */
  port: number;
  host: string;
}

export interface TunnelOptions {
  /** Names the processes and their logs, when several tunnels run at once. */
  label?: string;
  /** Where the agent dials instead of the gateway's agent port (a relay in front of it). */
  agentDialsVia?: (wsPort: number) => number;
}

export async function startTunnel(
  children: Children,
  parent: string,
  launcher: Launcher,
  upstreamPort: number,
  options: TunnelOptions = {},
): Promise<Tunnel> {
  const suffix = options.label ? ` (${options.label})` : "";
  const dir = join(parent, options.label ? `tunnel-${options.label.replace(/\W+/g, "-")}` : "tunnel");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const token = "bench-token";
  const secret = randomBytes(24).toString("hex");
  const config = join(dir, "gateway.toml");
  writeFileSync(config, `[[tokens]]\ntoken = "${token}"\nsecret = "${secret}"\nagents = ["${AGENT_ID}"]\n`, {
    mode: 0o600,
  });
  const env = { NODE_ENV: "production" };
  const gateway = children.spawn(
    `gateway${suffix}`,
    [
      ...launcher("gateway"),
      "serve",
      "--config",
      config,
      "--domain",
      DOMAIN,
      "--bind",
      "127.0.0.1",
      "--http-port",
      "0",
      "--ws-port",
      "0",
      // The admin listener defaults to a fixed port, which another gateway on a shared machine
      // may hold; it plays no part in forwarding.
      "--admin",
      "off",
    ],
    { env },
  );
  const [, httpPort] = await gateway.waitFor(/ingress listening on http:\/\/[^\s]+:(\d+)/);
  const [, wsPort] = await gateway.waitFor(/agents connect to ws:\/\/[^\s]+:(\d+)/);
  const dialPort = options.agentDialsVia?.(Number(wsPort)) ?? Number(wsPort);
  const agent = children.spawn(
    `agent${suffix}`,
    [
      ...launcher("agent"),
      "connect",
      "--gateway",
      `ws://127.0.0.1:${dialPort}`,
      "--token",
      token,
      "--id",
      AGENT_ID,
      "--to",
      `127.0.0.1:${upstreamPort}`,
    ],
    // The secret goes through the environment, as the README asks of users.
    { env: { ...env, INDRANET_SECRET: secret } },
  );
  await agent.waitFor(/tunnel ready/);
  const port = Number(httpPort);
  return { gateway, agent, port, host: `${AGENT_ID}.${DOMAIN}:${port}` };
}
