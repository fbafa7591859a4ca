// The inspector rows: what keeping the last exchanges costs the data path. Two tunnels from dist/
// to the same upstream, one whose gateway runs with `--inspect 0` and one whose gateway runs with
// the defaults (the last 200 exchanges, the first 64 KiB of each body), take the main table's
// 1 KiB load in turn, then 64 KiB responses, whose bodies the inspector copies whole. Which gateway
// goes first changes every round. RSS after the last round shows what the full ring holds.
import { expectServed, median, type Target, wrk } from "./load.ts";
import { CONNECTIONS, measureRequests, type RequestRun, type RoundSettings } from "./measure.ts";
import { MEDIUM_PATH } from "./nginx.ts";
import { type Memory, memory } from "./procfs.ts";
import type { Children } from "./procs.ts";
import { fmt, markdownTable, WRK_FIGURES } from "./report.ts";
import { fromDist, startTunnel, type Tunnel } from "./tunnel.ts";

type Mode = "off" | "on";

/** In the order they start and are listed. */
const MODES: { mode: Mode; flags: string[]; label: string }[] = [
  { mode: "off", flags: ["--inspect", "0"], label: "off (`--inspect 0`)" },
  { mode: "on", flags: [], label: "on (defaults: 200 × 64 KiB)" },
];

/** As the main table's idle figure: connected and settled, before any request. */
const SETTLE_MS = 1_000;

type Size = "small" | "medium";

const SIZES: { size: Size; label: string }[] = [
  { size: "small", label: "1 KiB" },
  { size: "medium", label: "64 KiB" },
];

type Round = Record<Size, Record<Mode, RequestRun>>;

export interface InspectorRun {
  rounds: Round[];
  /** wrk's duration per run on the 1 KiB file, and on the 64 KiB file. */
  seconds: Record<Size, number>;
  /** Each gateway's memory before any request and after the last round. */
  memory: Record<Mode, { idle: Memory; end: Memory }>;
  /** Wall time of the whole part, start-up included. */
  elapsed: number;
}

/** Starts both tunnels, measures `rounds` rounds, stops them. */
export async function measureInspector(
  children: Children,
  dir: string,
  upstreamPort: number,
  settings: RoundSettings,
): Promise<InspectorRun> {
  const started = performance.now();
  const tunnels = {} as Record<Mode, Tunnel>;
  try {
    for (const { mode, flags } of MODES) {
      tunnels[mode] = await startTunnel(children, dir, fromDist, upstreamPort, {
        label: `inspector ${mode}`,
        gatewayFlags: flags,
      });
    }
    await Bun.sleep(SETTLE_MS);
    const idle = gatewayMemory(tunnels);
    for (const { mode } of MODES) await expectServed(target(tunnels[mode]));
    // The 64 KiB runs follow the 1 KiB runs on warm gateways and only have to show the body copy:
    // half as long keeps the part under a minute at the default settings.
    const seconds = { small: settings.seconds, medium: Math.ceil(settings.seconds / 2) };
    const rounds: Round[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      const order: Mode[] = round % 2 === 1 ? ["off", "on"] : ["on", "off"];
      console.log(`round ${round}/${settings.rounds}: 1 KiB then 64 KiB, inspector ${order.join(" then ")}`);
      rounds.push(await measureRound(tunnels, order, seconds));
      for (const { mode } of MODES) {
        for (const child of [tunnels[mode].gateway, tunnels[mode].agent]) {
          if (!child.running) throw new Error(`${child.name} exited during the bench\n${child.output}`);
        }
      }
    }
    const end = gatewayMemory(tunnels);
    return {
      rounds,
      seconds,
      memory: { off: { idle: idle.off, end: end.off }, on: { idle: idle.on, end: end.on } },
      elapsed: (performance.now() - started) / 1000,
    };
  } finally {
    for (const tunnel of Object.values(tunnels)) {
      await children.stop(tunnel.agent);
      await children.stop(tunnel.gateway);
    }
  }
}

function target(tunnel: Tunnel): Target {
  return { port: tunnel.port, host: tunnel.host };
}

function gatewayMemory(tunnels: Record<Mode, Tunnel>): Record<Mode, Memory> {
  return { off: memory(tunnels.off.gateway.pid), on: memory(tunnels.on.gateway.pid) };
}

/** 1 KiB through each gateway in `order`, each after a 1 s burst not counted, then 64 KiB likewise. */
async function measureRound(
  tunnels: Record<Mode, Tunnel>,
  order: Mode[],
  seconds: Record<Size, number>,
): Promise<Round> {
  const inTurn = async (size: Size, path?: string) => {
    const runs = {} as Record<Mode, RequestRun>;
    for (const mode of order) {
      const { gateway } = tunnels[mode];
      const t = target(tunnels[mode]);
      if (size === "small") await wrk(t, CONNECTIONS, 1);
      runs[mode] = await measureRequests(t, { gateway: gateway.pid }, seconds[size], path);
    }
    return runs;
  };
  return { small: await inTurn("small"), medium: await inTurn("medium", MEDIUM_PATH) };
}

/** The table's columns after the row's names: wrk's figures, then the gateway's CPU per request. */
const COLUMNS: { pick: (r: RequestRun) => number; digits: number }[] = [
  ...WRK_FIGURES,
  { pick: (r) => r.cpuUsPerRequest.gateway ?? Number.NaN, digits: 0 },
];

/** Both gateways' figures per response size, their ratio and their memory, for the terminal and the doc. */
export function renderInspector(run: InspectorRun): string {
  const value = (size: Size, mode: Mode, pick: (r: RequestRun) => number) =>
    median(run.rounds.map((r) => pick(r[size][mode])));
  const ratio = (size: Size, pick: (r: RequestRun) => number) =>
    median(run.rounds.map((r) => pick(r[size].on) / pick(r[size].off)));
  const rows = SIZES.flatMap(({ size, label }) => [
    ...MODES.map(({ mode, label: inspector }) => [
      label,
      inspector,
      ...COLUMNS.map(({ pick, digits }) => fmt(value(size, mode, pick), digits)),
    ]),
    [label, "× on / off", ...COLUMNS.map(({ pick }) => fmt(ratio(size, pick), 2))],
  ]);
  const mem = (mode: Mode) => run.memory[mode];
  const plural = run.rounds.length === 1 ? "" : "s";
  return [
    `${run.rounds.length} round${plural}; in each, wrk at ${CONNECTIONS} connections for ${run.seconds.small} s ` +
      `on the 1 KiB file after an uncounted 1 s burst, then for ${run.seconds.medium} s on a 64 KiB file, ` +
      "through each gateway in turn, the first one alternating between rounds; " +
      `${run.elapsed.toFixed(0)} s in all, start-up included. Values are medians over the rounds; ` +
      "× is the median over rounds of on / off.",
    "",
    markdownTable(
      [
        "response",
        "inspector",
        `req/s ${CONNECTIONS}c`,
        `p50 ${CONNECTIONS}c ms`,
        `p99 ${CONNECTIONS}c ms`,
        "gateway CPU µs per request",
      ],
      rows,
    ),
    "",
    markdownTable(
      ["gateway", "idle RSS MiB", "RSS after the load MiB", "peak RSS (VmHWM) MiB"],
      MODES.map(({ mode, label }) => [
        `inspector ${label}`,
        fmt(mem(mode).idle.rssMiB, 1),
        fmt(mem(mode).end.rssMiB, 1),
        fmt(mem(mode).end.peakMiB, 1),
      ]),
    ),
    "",
    `RSS after the load, on − off: ${fmt(mem("on").end.rssMiB - mem("off").end.rssMiB, 1)} MiB ` +
      "(the ring then holds 200 exchanges with 64 KiB responses).",
  ].join("\n");
}
