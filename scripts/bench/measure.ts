// One measurement set against one target: a short warm-up, wrk at 32 and at 1 connection, then the
// 64 MiB download and upload. CPU used by the watched processes is recorded per phase.
import { download, type Target, upload, type WrkResult, wrk } from "./load.ts";
import { SMALL_PATH } from "./nginx.ts";
import { cpuSeconds } from "./procfs.ts";
import type { Sample } from "./report.ts";

/** Connections of the small-request column; the cluster and inspector rows use the same. */
export const CONNECTIONS = 32;

export interface Settings {
  /** wrk duration per run, seconds. */
  seconds: number;
  /** 64 MiB transfers per direction; the median is kept. */
  transfers: number;
  largeFile: string;
}

/** CPU seconds a watched process used during each phase. */
export type PhaseCpu = Record<"c32" | "down" | "up", Record<string, number>>;

export interface Measurement {
  sample: Sample;
  /** Requests wrk completed at 32 connections (to turn CPU into CPU per request). */
  requests32: number;
  cpu: PhaseCpu;
}

export async function measure(
  target: Target,
  settings: Settings,
  watch: Record<string, number> = {},
): Promise<Measurement> {
  // A first burst lets JIT-compiling runtimes and connection pools settle; it is not counted.
  await wrk(target, CONNECTIONS, 1);
  const c32 = await track(watch, () => wrk(target, CONNECTIONS, settings.seconds));
  const c1 = await wrk(target, 1, settings.seconds);
  const down = await track(watch, () => download(target, settings.transfers));
  const up = await track(watch, () => upload(target, settings.largeFile, settings.transfers));
  return {
    sample: {
      rps32: c32.result.rps,
      p50c32: c32.result.p50Ms,
      p99c32: c32.result.p99Ms,
      rps1: c1.rps,
      p50c1: c1.p50Ms,
      p99c1: c1.p99Ms,
      downMBs: down.result,
      upMBs: up.result,
    },
    requests32: c32.result.rps * settings.seconds,
    cpu: { c32: c32.cpu, down: down.cpu, up: up.cpu },
  };
}

/** How long the cluster and inspector parts load: rounds, and wrk's duration per run in seconds. */
export interface RoundSettings {
  rounds: number;
  seconds: number;
}

/** One wrk run and the CPU microseconds each watched process spent per request meanwhile. */
export interface RequestRun {
  wrk: WrkResult;
  cpuUsPerRequest: Record<string, number>;
}

/** wrk at CONNECTIONS for `seconds` on `path`, CPU counted; no warm-up. */
export async function measureRequests(
  target: Target,
  watch: Record<string, number>,
  seconds: number,
  path = SMALL_PATH,
): Promise<RequestRun> {
  const { result, cpu } = await track(watch, () => wrk(target, CONNECTIONS, seconds, path));
  const requests = result.rps * seconds;
  return {
    wrk: result,
    cpuUsPerRequest: Object.fromEntries(
      Object.entries(cpu).map(([name, used]) => [name, (used * 1e6) / requests]),
    ),
  };
}

/** Runs `work` and the CPU seconds each watched process (name → pid) used meanwhile. */
export async function track<T>(watch: Record<string, number>, work: () => Promise<T>) {
  const before = readAll(watch);
  const result = await work();
  const after = readAll(watch);
  const cpu = Object.fromEntries(
    Object.keys(watch).map((name) => [name, (after[name] ?? 0) - (before[name] ?? 0)]),
  );
  return { result, cpu };
}

function readAll(watch: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(watch).map(([name, pid]) => [name, cpuSeconds(pid)]));
}
