// Where the tunnel's time goes: the gateway and the agent run from source under `bun --cpu-prof`
// while one load runs, then each profile is reduced to its top self-time functions. The CPU each
// process used during the load (from /proc) says how busy it was.
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { download, type Target, upload, wrk } from "./load.ts";
import { cpuSeconds } from "./procfs.ts";
import type { Children } from "./procs.ts";
import { markdownTable } from "./report.ts";
import { profiled, startTunnel } from "./tunnel.ts";

const ROOT = join(import.meta.dir, "..", "..");
const TOP = 12;

export interface ProfileOptions {
  dir: string;
  upstreamPort: number;
  largeFile: string;
  seconds: number;
}

interface Scenario {
  name: string;
  tag: string;
  load: (target: Target, options: ProfileOptions) => Promise<unknown>;
}

const SCENARIOS: Scenario[] = [
  { name: "1 KiB GET, 32 connections", tag: "get-1k", load: (t, o) => wrk(t, 32, o.seconds) },
  { name: "64 MiB download", tag: "download", load: (t) => download(t, 10) },
  { name: "64 MiB upload", tag: "upload", load: (t, o) => upload(t, o.largeFile, 10) },
];

/** Runs every scenario in turn, each with freshly started (and profiled) gateway and agent. */
export async function profileTunnel(children: Children, options: ProfileOptions): Promise<string> {
  const sections: string[] = [];
  for (const scenario of SCENARIOS) {
    console.log(`profiling: ${scenario.name}`);
    sections.push(await profileScenario(children, options, scenario));
  }
  return sections.join("\n\n");
}

async function profileScenario(
  children: Children,
  options: ProfileOptions,
  scenario: Scenario,
): Promise<string> {
  const dir = join(options.dir, "profile", scenario.tag);
  const tunnel = await startTunnel(
    children,
    join(options.dir, scenario.tag),
    profiled(dir),
    options.upstreamPort,
  );
  const target = { port: tunnel.port, host: tunnel.host };
  await wrk(target, 32, 1);
  const pids = { gateway: tunnel.gateway.pid, agent: tunnel.agent.pid };
  const before = { gateway: cpuSeconds(pids.gateway), agent: cpuSeconds(pids.agent) };
  const started = performance.now();
  await scenario.load(target, options);
  const wall = (performance.now() - started) / 1000;
  const busy = {
    gateway: (cpuSeconds(pids.gateway) - before.gateway) / wall,
    agent: (cpuSeconds(pids.agent) - before.agent) / wall,
  };
  // The profile is written when the process exits: agent first, so it does not redial; a generous
  // grace, since a killed process writes nothing.
  await children.stop(tunnel.agent, 15_000);
  await children.stop(tunnel.gateway, 15_000);
  const lines = [
    `#### ${scenario.name}`,
    "",
    `CPU busy during the load (from /proc, ${wall.toFixed(1)} s): gateway ${pct(busy.gateway)}, agent ${pct(busy.agent)} of one core.`,
  ];
  for (const side of ["gateway", "agent"] as const) {
    lines.push("", `${side}:`, "", topFunctions(join(dir, `${side}.cpuprofile`)));
  }
  return lines.join("\n");
}

const pct = (share: number) => `${(share * 100).toFixed(0)}%`;

/** The subset of the Chrome .cpuprofile format that Bun writes and this reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Self time per function (name, file, line), as a table of the busiest ones. Bun takes no samples
 * while the process sleeps in the event loop and charges the whole gap to the next sample's time
 * delta, so samples are counted rather than their deltas summed: each stands for one interval.
 */
export function topFunctions(file: string): string {
  let profile: CpuProfile;
  try {
    profile = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    return `(no profile: ${(error as Error).message})`;
  }
  const frameOf = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  for (const id of profile.samples) {
    const frame = frameOf.get(id);
    const key = frame ? describe(frame) : "(unknown)";
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  const total = profile.samples.length;
  const rows = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([name, samples]) => [name, String(samples), ((samples / total) * 100).toFixed(1)]);
  return `${markdownTable(["function (self time)", "samples", "% of samples"], rows)}\n\n${total} samples in all.`;
}

function describe(frame: CpuProfile["nodes"][number]["callFrame"]): string {
  const name = frame.functionName || "(anonymous)";
  if (!frame.url) return name;
  const path = frame.url.startsWith("file://") ? frame.url.slice(7) : frame.url;
  const where = path.startsWith("/") ? relative(ROOT, path) : path;
  return `${name} ${where}:${frame.lineNumber + 1}`;
}
