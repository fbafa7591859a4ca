// `make bench`: the tunnel against nginx directly, an nginx reverse-proxy hop and `ssh -R` tunnels,
// everything on loopback. Each round measures every row right after a direct run, so the ratios
// hold on a shared, noisy machine where absolute figures drift. Prints the table and refreshes
// docs/PERFORMANCE.md. Then single transfers over a delay relay (a link with a round trip), the
// tunnel against plain TCP over the same relay; `--only relay` runs just those. Then requests
// forwarded between two gateways of a cluster beside the same requests served locally;
// `--only cluster` runs just those. Then the same requests through a gateway with the inspector off
// and one with it on; `--only inspector` runs just those. Then 64 MiB transfers as raw TCP through
// a [[tcp]] port against `ssh -L` and direct; `--only tcp` runs just those. `--profile` instead
// profiles the gateway and the agent run from source.
//
//   bun scripts/bench.ts [--rounds 3] [--seconds 5] [--transfers 5] [--relay-transfers 5]
//                        [--only relay|cluster|inspector|tcp] [--profile] [--no-doc]
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type ClusterRun, measureCluster, renderCluster } from "./bench/cluster.ts";
import { updateSection } from "./bench/doc.ts";
import { type InspectorRun, measureInspector, renderInspector } from "./bench/inspector.ts";
import type { Target } from "./bench/load.ts";
import { median } from "./bench/load.ts";
import { describeMachine, machineLine } from "./bench/machine.ts";
import { type Measurement, measure, type Settings } from "./bench/measure.ts";
import { LARGE_BYTES, startProxy, startUpstream, writeContent } from "./bench/nginx.ts";
import { memory } from "./bench/procfs.ts";
import { Children, killRunning } from "./bench/procs.ts";
import { profileTunnel } from "./bench/profile.ts";
import { measureRelay, type RelayRun, renderRelay } from "./bench/relay.ts";
import {
  cpuTable,
  memoryTable,
  type Pair,
  resultsTable,
  summarize,
  TUNNEL_ROW,
  type TunnelCpu,
  type TunnelMemory,
  targetChecks,
} from "./bench/report.ts";
import { startReverseTunnel, startSshd } from "./bench/ssh.ts";
import { measureTcp, renderTcp, type TcpRun } from "./bench/tcp.ts";
import { fromDist, startTunnel, type Tunnel } from "./bench/tunnel.ts";

const ROOT = join(import.meta.dir, "..");
const DOC = join(ROOT, "docs", "PERFORMANCE.md");

/** The parts `--only` runs alone, each with its own section in the doc. */
const PARTS = ["relay", "cluster", "inspector", "tcp"] as const;
type Part = (typeof PARTS)[number];

function isPart(name: string): name is Part {
  return (PARTS as readonly string[]).includes(name);
}

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
    transfers: { type: "string", default: "5" },
    "relay-transfers": { type: "string", default: "5" },
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    "no-doc": { type: "boolean", default: false },
  },
});

const dir = mkdtempSync(join(tmpdir(), "indranet-bench-"));
const children = new Children(join(dir, "logs"));

async function cleanup(): Promise<void> {
  killRunning();
  await children.stopAll();
  rmSync(dir, { recursive: true, force: true });
}

// Ctrl-C or a kill must not leave servers listening: stop everything, then exit.
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping everything the bench started`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await installDeps();
  const only = flags.only;
  if (only !== undefined && !isPart(only)) {
    throw new Error(`--only takes ${PARTS.map((p) => `"${p}"`).join(", ")}, got ${only}`);
  }
  if (flags.profile) await profileMain();
  else if (only) await onlyMain(only);
  else await benchMain();
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
} finally {
  if (!interrupted) await cleanup();
}

async function installDeps(): Promise<void> {
  const proc = Bun.spawn([join(ROOT, "scripts", "install-bench-deps.sh")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if ((await proc.exited) !== 0) throw new Error("could not install nginx, wrk and OpenSSH (see above)");
}

function requireDist(): void {
  for (const side of ["gateway", "agent"] as const) {
    const binary = fromDist(side)[0] as string;
    if (!existsSync(binary)) throw new Error(`${binary} is missing: run make build (make bench does)`);
  }
}

function positive(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
}

interface Rows {
  direct: Target;
  others: { name: string; target: Target }[];
  tunnel: Tunnel;
}

/** Starts the upstream and every row once; they stay up for all rounds. */
async function startRows(root: string): Promise<Rows> {
  const upstreamPort = await startUpstream(children, dir, root);
  const anyHost = (port: number): Target => ({ port, host: `127.0.0.1:${port}` });
  const proxyPort = await startProxy(children, dir, upstreamPort);
  const sshd = await startSshd(children, dir);
  const sshN = await startReverseTunnel(children, sshd, upstreamPort, false);
  const sshTT = await startReverseTunnel(children, sshd, upstreamPort, true);
  const tunnel = await startTunnel(children, dir, fromDist, upstreamPort);
  return {
    direct: anyHost(upstreamPort),
    others: [
      { name: "nginx proxy hop", target: anyHost(proxyPort) },
      { name: "ssh -N -R", target: anyHost(sshN) },
      { name: "ssh -tt -R", target: anyHost(sshTT) },
      { name: TUNNEL_ROW, target: { port: tunnel.port, host: tunnel.host } },
    ],
    tunnel,
  };
}

async function benchMain(): Promise<void> {
  requireDist();
  const rounds = positive("rounds", flags.rounds);
  const machine = await describeMachine();
  console.log(`bench: ${machineLine(machine)}`);
  const { root, largeFile } = await writeContent(dir);
  const settings: Settings = {
    seconds: positive("seconds", flags.seconds),
    transfers: positive("transfers", flags.transfers),
    largeFile,
  };
  const relayTransfers = positive("relay-transfers", flags["relay-transfers"]);
  const rows = await startRows(root);
  const { gateway, agent } = rows.tunnel;
  // Idle: connected and settled, before any request.
  await Bun.sleep(1000);
  const idle = { gateway: memory(gateway.pid), agent: memory(agent.pid) };

  const pairs: Pair[] = [];
  const cpu: TunnelCpu[] = [];
  const started = performance.now();
  for (let round = 1; round <= rounds; round++) {
    for (const { name, target } of rows.others) {
      console.log(`round ${round}/${rounds}: direct, then ${name}`);
      const direct = await measure(rows.direct, settings);
      const isTunnel = name === TUNNEL_ROW;
      const watch: Record<string, number> = isTunnel ? { gateway: gateway.pid, agent: agent.pid } : {};
      const measured = await measure(target, settings, watch);
      pairs.push({ row: name, direct: direct.sample, measured: measured.sample });
      if (isTunnel) cpu.push(cpuPerUnit(measured, settings.transfers));
      assertRunning([gateway, agent]);
    }
  }
  const mem: TunnelMemory = {
    gateway: { idle: idle.gateway, end: memory(gateway.pid) },
    agent: { idle: idle.agent, end: memory(agent.pid) },
  };
  const elapsed = (performance.now() - started) / 1000;
  console.log("single transfers over the delay relay");
  const relay = await measureRelay(children, dir, rows.direct.port, largeFile, relayTransfers);
  const parts = { rounds, seconds: settings.seconds };
  console.log("requests forwarded between two gateways");
  const cluster = await measureCluster(children, dir, rows.direct.port, parts);
  console.log("requests through a gateway with the inspector off and one with it on");
  const inspector = await measureInspector(children, dir, rows.direct.port, parts);
  console.log("64 MiB transfers as raw TCP: a [[tcp]] port, ssh -L and direct");
  const tcp = await measureTcp(children, dir, rows.direct.port, largeFile, settings.transfers);
  const results = renderResults(machineLine(machine), pairs, mem, cpu, rounds, settings, elapsed, relay);
  const clusterSection = clusterText(machineLine(machine), cluster);
  const inspectorSection = inspectorText(machineLine(machine), inspector);
  const tcpSection = tcpText(machineLine(machine), tcp);
  console.log(`\n${results}\n\n${clusterSection}\n\n${inspectorSection}\n\n${tcpSection}\n`);
  writeDoc("results", results);
  writeDoc("cluster", clusterSection);
  writeDoc("inspector", inspectorSection);
  writeDoc("tcp", tcpSection);
}

/** Rewrites one marked section of the doc, unless --no-doc. */
function writeDoc(section: string, content: string): void {
  if (flags["no-doc"]) return;
  updateSection(DOC, section, content);
  console.log(`bench: wrote the ${section} section of ${DOC}`);
}

function assertRunning(procs: { name: string; running: boolean; output: string }[]): void {
  for (const p of procs) if (!p.running) throw new Error(`${p.name} exited during the bench\n${p.output}`);
}

/** CPU per request and per MiB moved, from the CPU seconds of each phase. */
function cpuPerUnit(m: Measurement, transfers: number): TunnelCpu {
  const mib = (transfers * LARGE_BYTES) / (1024 * 1024);
  const both = (f: (side: string) => number) => ({ gateway: f("gateway"), agent: f("agent") });
  return {
    usPerRequest: both((side) => ((m.cpu.c32[side] ?? Number.NaN) * 1e6) / m.requests32),
    msPerMiBDown: both((side) => ((m.cpu.down[side] ?? Number.NaN) * 1000) / mib),
    msPerMiBUp: both((side) => ((m.cpu.up[side] ?? Number.NaN) * 1000) / mib),
  };
}

function renderResults(
  machine: string,
  pairs: Pair[],
  mem: TunnelMemory,
  cpu: TunnelCpu[],
  rounds: number,
  settings: Settings,
  elapsed: number,
  relay: RelayRun,
): string {
  const summaries = summarize(pairs);
  const medianCpu = (pick: (c: TunnelCpu) => { gateway: number; agent: number }) => ({
    gateway: median(cpu.map((c) => pick(c).gateway)),
    agent: median(cpu.map((c) => pick(c).agent)),
  });
  return [
    `Measured ${machine}.`,
    "",
    `${rounds} rounds, wrk ${settings.seconds} s per run, ${settings.transfers} transfers of 64 MiB per direction ` +
      `per run; ${elapsed.toFixed(0)} s in all. Values are medians over the rounds; × is the median over rounds ` +
      "of the row's ratio to the direct run taken just before it (Δ: difference in ms).",
    "",
    resultsTable(summaries),
    "",
    "Memory of the tunnel's processes (VmRSS, VmHWM):",
    "",
    memoryTable(mem),
    "",
    "CPU of the tunnel's processes per unit of work (from /proc/PID/stat, medians over rounds):",
    "",
    cpuTable({
      usPerRequest: medianCpu((c) => c.usPerRequest),
      msPerMiBDown: medianCpu((c) => c.msPerMiBDown),
      msPerMiBUp: medianCpu((c) => c.msPerMiBUp),
    }),
    "",
    "Targets for the tunnel row:",
    "",
    "```",
    ...targetChecks(summaries, mem),
    "```",
    "",
    "<!-- bench:relay:begin -->",
    relayText(machine, relay),
    "<!-- bench:relay:end -->",
  ].join("\n");
}

/** A part's heading line, what was measured and on which machine, before its tables. */
function measured(what: string, machine: string, tables: string): string {
  return [`${what}, measured ${machine}.`, "", tables].join("\n");
}

/** The relay rows, between their own markers in the doc so that `--only relay` refreshes them alone. */
function relayText(machine: string, relay: RelayRun): string {
  return measured("Single transfers over a delay relay", machine, renderRelay(relay));
}

/** The cluster rows, between their own markers in the doc (outside the results, with prose after them). */
function clusterText(machine: string, cluster: ClusterRun): string {
  return measured("Requests forwarded between two gateways", machine, renderCluster(cluster));
}

/** The inspector rows, between their own markers in the doc, as the cluster rows. */
function inspectorText(machine: string, inspector: InspectorRun): string {
  return measured("Requests with the inspector off and on", machine, renderInspector(inspector));
}

/** The TCP rows, between their own markers in the doc, as the cluster rows. */
function tcpText(machine: string, tcp: TcpRun): string {
  return measured("Bulk transfers as raw TCP streams", machine, renderTcp(tcp));
}

/** `--only relay`, `cluster`, `inspector` or `tcp`: the upstream and that part's rows, nothing else. */
async function onlyMain(part: Part): Promise<void> {
  requireDist();
  const relayTransfers = positive("relay-transfers", flags["relay-transfers"]);
  const load = { rounds: positive("rounds", flags.rounds), seconds: positive("seconds", flags.seconds) };
  const machine = machineLine(await describeMachine());
  console.log(`bench: ${machine}`);
  const { root, largeFile } = await writeContent(dir);
  const upstreamPort = await startUpstream(children, dir, root);
  const sections: Record<Part, () => Promise<string>> = {
    relay: async () =>
      relayText(machine, await measureRelay(children, dir, upstreamPort, largeFile, relayTransfers)),
    cluster: async () => clusterText(machine, await measureCluster(children, dir, upstreamPort, load)),
    inspector: async () => inspectorText(machine, await measureInspector(children, dir, upstreamPort, load)),
    tcp: async () =>
      tcpText(
        machine,
        await measureTcp(children, dir, upstreamPort, largeFile, positive("transfers", flags.transfers)),
      ),
  };
  const section = await sections[part]();
  console.log(`\n${section}\n`);
  writeDoc(part, section);
}

async function profileMain(): Promise<void> {
  const machine = await describeMachine();
  const { root, largeFile } = await writeContent(dir);
  const upstreamPort = await startUpstream(children, dir, root);
  const seconds = positive("seconds", flags.seconds);
  const summary = await profileTunnel(children, { dir, upstreamPort, largeFile, seconds });
  const section = [
    `Profiled ${machineLine(machine)}; gateway and agent from source under \`bun --cpu-prof\` ` +
      "(1 ms sampling), the 1 KiB load for " +
      `${seconds} s, 10 transfers of 64 MiB each way.`,
    "",
    summary,
  ].join("\n");
  console.log(`\n${section}\n`);
  writeDoc("profile", section);
}
