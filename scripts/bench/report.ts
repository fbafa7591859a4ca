// Turns the runs into the results: medians over rounds, each row against the direct run taken
// just before it, the targets checked, rendered as one Markdown table for the terminal and the doc.
import { median } from "./load.ts";
import type { RequestRun } from "./measure.ts";
import type { Memory } from "./procfs.ts";

/** One measurement of one row: the 1 KiB GETs at 32 and 1 connections, the 64 MiB transfers. */
export interface Sample {
  rps32: number;
  p50c32: number;
  p99c32: number;
  rps1: number;
  p50c1: number;
  p99c1: number;
  downMBs: number;
  upMBs: number;
}

/** A row's sample and the direct sample taken just before it, in one round. */
export interface Pair {
  row: string;
  direct: Sample;
  measured: Sample;
}

export interface TunnelMemory {
  gateway: { idle: Memory; end: Memory };
  agent: { idle: Memory; end: Memory };
}

/** CPU the tunnel's processes used per unit of work, from /proc/PID/stat around each load. */
export interface TunnelCpu {
  /** CPU microseconds per request at 32 connections. */
  usPerRequest: { gateway: number; agent: number };
  /** CPU milliseconds per MiB transferred. */
  msPerMiBDown: { gateway: number; agent: number };
  msPerMiBUp: { gateway: number; agent: number };
}

/** The targets, as ratios to (or differences from) the direct run. */
export const TARGETS = {
  rps32Ratio: 0.65,
  transferRatio: 0.6,
  p50c1DeltaMs: 0.07,
  p99c32Ratio: 2,
  idleMiB: 40,
  peakMiB: 64,
};

export const TUNNEL_ROW = "indraNet tunnel";

interface RowSummary {
  row: string;
  /** Medians of the row's own values. */
  value: Sample;
  /** Medians over rounds of measured / direct (p50c1: measured − direct, in ms). */
  ratio: Sample;
}

const KEYS: (keyof Sample)[] = ["rps32", "p50c32", "p99c32", "rps1", "p50c1", "p99c1", "downMBs", "upMBs"];

function mapSample(f: (key: keyof Sample) => number): Sample {
  return Object.fromEntries(KEYS.map((k) => [k, f(k)])) as unknown as Sample;
}

export function summarize(pairs: Pair[]): RowSummary[] {
  const rows = [...new Set(pairs.map((p) => p.row))];
  const direct: RowSummary = {
    row: "direct",
    value: mapSample((k) => median(pairs.map((p) => p.direct[k]))),
    ratio: mapSample((k) => (k === "p50c1" ? 0 : 1)),
  };
  return [
    direct,
    ...rows.map((row) => {
      const mine = pairs.filter((p) => p.row === row);
      return {
        row,
        value: mapSample((k) => median(mine.map((p) => p.measured[k]))),
        ratio: mapSample((k) =>
          median(
            mine.map((p) => (k === "p50c1" ? p.measured[k] - p.direct[k] : p.measured[k] / p.direct[k])),
          ),
        ),
      };
    }),
  ];
}

/** A figure with `digits` decimals, or "fail" where a run failed (NaN). */
export const fmt = (value: number, digits: number) =>
  Number.isFinite(value) ? value.toFixed(digits) : "fail";
const signed = (value: number) =>
  Number.isFinite(value) ? `${value >= 0 ? "+" : ""}${value.toFixed(3)}` : "fail";

export function resultsTable(summaries: RowSummary[]): string {
  const header = [
    "row",
    "req/s 32c",
    "×",
    "p99 32c ms",
    "×",
    "req/s 1c",
    "×",
    "p50 1c ms",
    "Δ ms",
    "down MB/s",
    "×",
    "up MB/s",
    "×",
  ];
  const body = summaries.map(({ row, value: v, ratio: r }) => [
    row,
    fmt(v.rps32, 0),
    fmt(r.rps32, 2),
    fmt(v.p99c32, 2),
    fmt(r.p99c32, 2),
    fmt(v.rps1, 0),
    fmt(r.rps1, 2),
    fmt(v.p50c1, 3),
    signed(r.p50c1),
    fmt(v.downMBs, 0),
    fmt(r.downMBs, 2),
    fmt(v.upMBs, 0),
    fmt(r.upMBs, 2),
  ]);
  return markdownTable(header, body);
}

export function memoryTable(mem: TunnelMemory): string {
  const row = (name: string, m: TunnelMemory["gateway"]) => [
    name,
    fmt(m.idle.rssMiB, 1),
    fmt(m.end.peakMiB, 1),
    fmt(m.end.rssMiB, 1),
  ];
  return markdownTable(
    ["process", "idle RSS MiB", "peak RSS (VmHWM) MiB", "RSS after the load MiB"],
    [row("gateway", mem.gateway), row("agent", mem.agent)],
  );
}

export function cpuTable(cpu: TunnelCpu): string {
  const row = (name: "gateway" | "agent") => [
    name,
    fmt(cpu.usPerRequest[name], 0),
    fmt(cpu.msPerMiBDown[name], 2),
    fmt(cpu.msPerMiBUp[name], 2),
  ];
  return markdownTable(
    ["process", "CPU µs per 1 KiB request (32c)", "CPU ms per MiB down", "CPU ms per MiB up"],
    [row("gateway"), row("agent")],
  );
}

/** One line per target for the tunnel row: measured value, target, pass or miss. */
export function targetChecks(summaries: RowSummary[], mem: TunnelMemory): string[] {
  const tunnel = summaries.find((s) => s.row === TUNNEL_ROW);
  if (!tunnel) return [];
  const r = tunnel.ratio;
  const check = (what: string, value: number, ok: boolean, target: string, digits = 2) =>
    `${ok ? "PASS" : "MISS"}  ${what}: ${fmt(value, digits)} (target ${target})`;
  return [
    check(
      "1 KiB req/s at 32 connections, × direct",
      r.rps32,
      r.rps32 >= TARGETS.rps32Ratio,
      `>= ${TARGETS.rps32Ratio}`,
    ),
    check(
      "64 MiB download, × direct",
      r.downMBs,
      r.downMBs >= TARGETS.transferRatio,
      `>= ${TARGETS.transferRatio}`,
    ),
    check(
      "64 MiB upload, × direct",
      r.upMBs,
      r.upMBs >= TARGETS.transferRatio,
      `>= ${TARGETS.transferRatio}`,
    ),
    check(
      "p50 at 1 connection, ms over direct",
      r.p50c1,
      r.p50c1 <= TARGETS.p50c1DeltaMs,
      `<= +${TARGETS.p50c1DeltaMs}`,
      3,
    ),
    check(
      "p99 at 32 connections, × direct",
      r.p99c32,
      r.p99c32 <= TARGETS.p99c32Ratio,
      `<= ${TARGETS.p99c32Ratio}`,
    ),
    ...(["gateway", "agent"] as const).flatMap((side) => [
      check(
        `${side} idle RSS, MiB`,
        mem[side].idle.rssMiB,
        mem[side].idle.rssMiB <= TARGETS.idleMiB,
        `<= ${TARGETS.idleMiB}`,
        1,
      ),
      check(
        `${side} peak RSS, MiB`,
        mem[side].end.peakMiB,
        mem[side].end.peakMiB <= TARGETS.peakMiB,
        `<= ${TARGETS.peakMiB}`,
        1,
      ),
    ]),
  ];
}

/** wrk's figures as the cluster and inspector tables show them, in order, with their decimals. */
export const WRK_FIGURES: { pick: (r: RequestRun) => number; digits: number }[] = [
  { pick: (r) => r.wrk.rps, digits: 0 },
  { pick: (r) => r.wrk.p50Ms, digits: 3 },
  { pick: (r) => r.wrk.p99Ms, digits: 2 },
];

/** A Markdown table whose columns are padded, so it reads as well in a terminal. */
export function markdownTable(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  const rule = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}
