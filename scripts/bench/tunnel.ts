// This tunnel's row: the gateway and the agent as a user runs them (the compiled binaries from
// dist/), or from source under `bun --cpu-prof` for the profile. The cluster rows start the same
// gateway and agent one at a time, two gateways sharing one config; the inspector rows start two
// tunnels whose gateways differ in their flags.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Child, Children } from "./procs.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const AGENT_ID = "bench";
export const DOMAIN = "bench.test";
/** Every gateway and agent of the bench runs with this, as in production. */
const ENV = { NODE_ENV: "production" };

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
  /** The gateway's flags besides the common ones and `--admin off`. */
  gatewayFlags?: string[];
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
  const credentials = writeCredentials(dir);
  // The admin listener defaults to a fixed port, which another gateway on a shared machine may
  // hold; it plays no part in forwarding.
  const gateway = await startGateway(children, launcher, `gateway${suffix}`, credentials, [
    "--admin",
    "off",
    ...(options.gatewayFlags ?? []),
  ]);
  const dialPort = options.agentDialsVia?.(gateway.wsPort) ?? gateway.wsPort;
  const agent = await startAgent(children, launcher, `agent${suffix}`, credentials, dialPort, upstreamPort);
  const port = gateway.httpPort;
  return { gateway: gateway.child, agent, port, host: agentHost(port) };
}

/** The Host header that routes a request on a gateway's ingress at `port` to the bench's agent. */
export function agentHost(port: number): string {
  return `${AGENT_ID}.${DOMAIN}:${port}`;
}

/** The token the agent presents and the gateway's config file that allows it. */
export interface Credentials {
  token: string;
  secret: string;
  config: string;
}

/** Writes a gateway config with one token for AGENT_ID into `dir`; gateways may share it. */
export function writeCredentials(dir: string): Credentials {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const token = "bench-token";
  const secret = randomBytes(24).toString("hex");
  const config = join(dir, "gateway.toml");
  writeFileSync(config, `[[tokens]]\ntoken = "${token}"\nsecret = "${secret}"\nagents = ["${AGENT_ID}"]\n`, {
    mode: 0o600,
  });
  return { token, secret, config };
}

export interface Gateway {
  child: Child;
  httpPort: number;
  wsPort: number;
}

/** A gateway on ephemeral loopback ports; `extra` flags follow the common ones. */
export async function startGateway(
  children: Children,
  launcher: Launcher,
  name: string,
  credentials: Credentials,
  extra: string[],
  env: Record<string, string> = {},
): Promise<Gateway> {
  const child = children.spawn(
    name,
    [
      ...launcher("gateway"),
      "serve",
      "--config",
      credentials.config,
      "--domain",
      DOMAIN,
      "--bind",
      "127.0.0.1",
      "--http-port",
      "0",
      "--ws-port",
      "0",
      ...extra,
    ],
    { env: { ...ENV, ...env } },
  );
  const [, httpPort] = await child.waitFor(/ingress listening on http:\/\/[^\s]+:(\d+)/);
  const [, wsPort] = await child.waitFor(/agents connect to ws:\/\/[^\s]+:(\d+)/);
  return { child, httpPort: Number(httpPort), wsPort: Number(wsPort) };
}

/**
 * An agent that dials 127.0.0.1:dialPort and forwards to the upstream; resolves once it is ready.
 * `extra` flags follow the common ones (`--tcp` for the TCP rows).
 */
export async function startAgent(
  children: Children,
  launcher: Launcher,
  name: string,
  credentials: Credentials,
  dialPort: number,
  upstreamPort: number,
  extra: string[] = [],
): Promise<Child> {
  const agent = children.spawn(
    name,
    [
      ...launcher("agent"),
      "connect",
      "--gateway",
      `ws://127.0.0.1:${dialPort}`,
      "--token",
      credentials.token,
      "--id",
      AGENT_ID,
      "--to",
      `127.0.0.1:${upstreamPort}`,
      ...extra,
    ],
    // The secret goes through the environment, as the README asks of users.
    { env: { ...ENV, INDRANET_SECRET: credentials.secret } },
  );
  await agent.waitFor(/tunnel ready/);
  return agent;
}
