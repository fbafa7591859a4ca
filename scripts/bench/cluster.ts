// The cluster rows: two gateways sharing a Redis, the agent connected to gateway A. The same 1 KiB
// load as the main table's 32-connection column goes to gateway A (local: A holds the agent's
// session) and to gateway B (forwarded: B finds A in Redis and sends the request over HTTP to A's
// ingress). Each round measures local right before forwarded and compares the two.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { expectServed, median, type Target, wrk } from "./load.ts";
import { CONNECTIONS, measureRequests, type RequestRun, type RoundSettings } from "./measure.ts";
import { type Child, type Children, freePort, run, waitForPort } from "./procs.ts";
import { fmt, markdownTable, WRK_FIGURES } from "./report.ts";
import {
  AGENT_ID,
  agentHost,
  fromDist,
  type Gateway,
  startAgent,
  startGateway,
  writeCredentials,
} from "./tunnel.ts";

/** Gateways register within REFRESH_MS (2 s) of starting; this leaves room on a loaded machine. */
const FORM_TIMEOUT_MS = 15_000;

/** What one path's run gives: wrk's figures, CPU per request by process, Redis traffic. */
interface PathRun extends RequestRun {
  redisCommandsPerSecond: number;
}

interface ClusterRound {
  local: PathRun;
  forwarded: PathRun;
}

export interface ClusterRun {
  rounds: ClusterRound[];
  /** wrk's duration per run. */
  seconds: number;
  /** Wall time of the whole part, start-up included. */
  elapsed: number;
}

interface Cluster {
  redis: { child: Child; port: number };
  a: Gateway;
  b: Gateway;
  agent: Child;
}

/** Starts Redis, the two gateways and the agent, measures `rounds` rounds, stops them all. */
export async function measureCluster(
  children: Children,
  dir: string,
  upstreamPort: number,
  settings: RoundSettings,
): Promise<ClusterRun> {
  const started = performance.now();
  const cluster = await startCluster(children, join(dir, "cluster"), upstreamPort, settings);
  try {
    await expectServed(target(cluster.b));
    const rounds: ClusterRound[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      console.log(`round ${round}/${settings.rounds}: local through gateway A, then forwarded through B`);
      rounds.push(await measureRound(cluster, settings.seconds));
      for (const child of processes(cluster)) {
        if (!child.running) throw new Error(`${child.name} exited during the bench\n${child.output}`);
      }
    }
    return { rounds, seconds: settings.seconds, elapsed: (performance.now() - started) / 1000 };
  } finally {
    for (const child of processes(cluster)) await children.stop(child);
  }
}

/** In the order they stop: each gateway removes its records as it leaves, so Redis goes last. */
function processes(cluster: Cluster): Child[] {
  return [cluster.agent, cluster.b.child, cluster.a.child, cluster.redis.child];
}

async function measureRound(cluster: Cluster, seconds: number): Promise<ClusterRound> {
  const local = { a: cluster.a.child.pid, agent: cluster.agent.pid };
  const redis = cluster.redis.port;
  return {
    local: await measurePath(target(cluster.a), local, redis, seconds),
    forwarded: await measurePath(target(cluster.b), { ...local, b: cluster.b.child.pid }, redis, seconds),
  };
}

async function startCluster(
  children: Children,
  dir: string,
  upstreamPort: number,
  settings: RoundSettings,
): Promise<Cluster> {
  const credentials = writeCredentials(dir);
  const redis = await startRedis(children, dir, settings);
  const env = { INDRANET_CLUSTER_SECRET: randomBytes(24).toString("hex") };
  const gateway = (name: string) =>
    startGateway(
      children,
      fromDist,
      name,
      credentials,
      ["--admin", "127.0.0.1:0", "--cluster-redis", `redis://127.0.0.1:${redis.port}`],
      env,
    );
  const a = await gateway("gateway A (cluster)");
  const agent = await startAgent(children, fromDist, "agent (cluster)", credentials, a.wsPort, upstreamPort);
  const b = await gateway("gateway B (cluster)");
  await waitUntilFormed(b.child);
  return { redis, a, b, agent };
}

/**
 * Redis for the directory, in memory only. `timeout` bounds its life should the bench be killed
 * outright: longer than the slowest cluster part the settings allow (wrk is killed 15 s past its
 * duration), so it never fires in a run that works.
 */
async function startRedis(
  children: Children,
  dir: string,
  settings: RoundSettings,
): Promise<{ child: Child; port: number }> {
  const port = freePort();
  const lifetimeS = 120 + settings.rounds * 2 * (settings.seconds + 60);
  const child = children.spawn("redis", [
    "timeout",
    String(lifetimeS),
    "redis-server",
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
  ]);
  await waitForPort(port, child);
  return { child, port };
}

/** Until gateway B's admin listener shows both gateways and the agent registered in Redis. */
async function waitUntilFormed(b: Child): Promise<void> {
  const [, adminPort] = await b.waitFor(/admin listening on http:\/\/[^\s]+:(\d+)/);
  const url = `http://127.0.0.1:${adminPort}/api/cluster`;
  const deadline = Date.now() + FORM_TIMEOUT_MS;
  let view: { gateways?: unknown[]; agents?: Record<string, string[]> } | undefined;
  while (Date.now() < deadline) {
    view = await fetch(url, { signal: AbortSignal.timeout(2_000) })
      .then((res) => res.json() as Promise<typeof view>)
      .catch(() => undefined);
    if (view?.gateways?.length === 2 && (view.agents?.[AGENT_ID]?.length ?? 0) > 0) return;
    await Bun.sleep(100);
  }
  throw new Error(`no cluster within ${FORM_TIMEOUT_MS} ms; ${url} shows ${JSON.stringify(view)}`);
}

function target(gateway: Gateway): Target {
  return { port: gateway.httpPort, host: agentHost(gateway.httpPort) };
}

/** A 1 s burst not counted (as the main table's rows have), then the load with CPU and Redis counted. */
async function measurePath(
  t: Target,
  watch: Record<string, number>,
  redisPort: number,
  seconds: number,
): Promise<PathRun> {
  await wrk(t, CONNECTIONS, 1);
  const commandsBefore = await commandsProcessed(redisPort);
  const started = performance.now();
  const requests = await measureRequests(t, watch, seconds);
  const commands = (await commandsProcessed(redisPort)) - commandsBefore;
  return { ...requests, redisCommandsPerSecond: commands / ((performance.now() - started) / 1000) };
}

/** Commands Redis has processed since it started, from INFO. */
async function commandsProcessed(port: number): Promise<number> {
  const result = await run(["redis-cli", "-p", String(port), "INFO", "stats"], 5_000);
  const found = result.stdout.match(/total_commands_processed:(\d+)/);
  return found ? Number(found[1]) : Number.NaN;
}

type Path = "local" | "forwarded";

/** The processes each path runs through, by the names measurePath() watches them under. */
const PROCESSES: { name: string; label: string; paths: Path[] }[] = [
  { name: "b", label: "gateway B (takes the request)", paths: ["forwarded"] },
  { name: "a", label: "gateway A (holds the agent)", paths: ["local", "forwarded"] },
  { name: "agent", label: "agent", paths: ["local", "forwarded"] },
];

/** The two paths' figures, their ratio, CPU per request and Redis traffic, for the terminal and the doc. */
export function renderCluster(run: ClusterRun): string {
  const value = (path: Path, pick: (r: PathRun) => number) => median(run.rounds.map((r) => pick(r[path])));
  const ratio = (pick: (r: PathRun) => number) =>
    median(run.rounds.map((r) => pick(r.forwarded) / pick(r.local)));
  const figures = (path: Path) => WRK_FIGURES.map(({ pick, digits }) => fmt(value(path, pick), digits));
  const cpu = (path: Path, p: (typeof PROCESSES)[number]) => {
    if (!p.paths.includes(path)) return "–";
    const usPerRequest = value(path, (r) => r.cpuUsPerRequest[p.name] ?? Number.NaN);
    return fmt(usPerRequest, 0);
  };
  const redis = (path: Path) => {
    const perSecond = value(path, (r) => r.redisCommandsPerSecond);
    return fmt(perSecond, 1);
  };
  const plural = run.rounds.length === 1 ? "" : "s";
  return [
    `${run.rounds.length} round${plural}, wrk ${run.seconds} s at ${CONNECTIONS} connections per run on the ` +
      `1 KiB file, local right before forwarded; ${run.elapsed.toFixed(0)} s in all, start-up included. ` +
      "Values are medians over the rounds; × is the median over rounds of forwarded / local.",
    "",
    markdownTable(
      ["path", `req/s ${CONNECTIONS}c`, `p50 ${CONNECTIONS}c ms`, `p99 ${CONNECTIONS}c ms`],
      [
        ["local: client → gateway A → agent", ...figures("local")],
        ["forwarded: client → gateway B → gateway A → agent", ...figures("forwarded")],
        ["× forwarded / local", ...WRK_FIGURES.map(({ pick }) => fmt(ratio(pick), 2))],
      ],
    ),
    "",
    markdownTable(
      ["process", "CPU µs per request, local", "CPU µs per request, forwarded"],
      PROCESSES.map((p) => [p.label, cpu("local", p), cpu("forwarded", p)]),
    ),
    "",
    `Redis commands per second during the load: ${redis("local")} local, ${redis("forwarded")} forwarded.`,
  ].join("\n");
}
