// The delay-relay rows: one 64 MiB download or upload at a time over a link with a round trip,
// the tunnel against plain TCP through an identical relay. For the tunnel the relay
// (tests/delay-relay.ts, run in the bench's own process) sits between the agent and the gateway's
// agent port; for plain TCP, between curl and the upstream. Each leg of either path ends on
// loopback at the relay, so TCP itself sees no round trip and plain TCP runs at the relay's rate
// cap: the tunnel reaches the same rate only if its stream windows cover the link's
// bandwidth-delay product.
import { type DelayRelay, startDelayRelay } from "../../tests/delay-relay.ts";
import { download, median, type Target, upload } from "./load.ts";
import { LARGE_BYTES } from "./nginx.ts";
import { memory } from "./procfs.ts";
import type { Children } from "./procs.ts";
import { fmt, markdownTable } from "./report.ts";
import { fromDist, startTunnel } from "./tunnel.ts";

export const RELAY_RTTS_MS = [20, 100];

/**
 * 400 Mbit/s per direction. At 100 ms the link then holds 5 MB in flight: twenty times the
 * initial 256 KiB window (which alone allows 2.6 MB/s) and under the 16 MiB a stream window may
 * grow to, so a window that grows as it should is not what limits the tunnel. Higher caps cost
 * the relay more CPU on a two-core machine that also runs curl, nginx, gateway and agent.
 */
export const RELAY_BYTES_PER_SECOND = 50_000_000;

/** The bottleneck's queue: about 10 ms at the cap. */
const RELAY_QUEUE_BYTES = 512 * 1024;

/** The single-stream download over the 100 ms link, as a share of plain TCP over the same relay. */
export const RELAY_TARGET = { rttMs: 100, downloadRatio: 0.8 };

export type Direction = "download" | "upload";

/** One transfer through the tunnel and the plain TCP transfer taken just before it, MB/s. */
export interface RelayPair {
  rttMs: number;
  direction: Direction;
  tunnel: number;
  plain: number;
}

export interface RelayRun {
  pairs: RelayPair[];
  /** VmHWM of each relayed tunnel's processes after its transfers, MiB, by round trip. */
  peakMiB: { rttMs: number; gateway: number; agent: number }[];
  transfers: number;
  seconds: number;
}

function startRelay(targetPort: number, rttMs: number): DelayRelay {
  return startDelayRelay({
    targetPort,
    oneWayDelayMs: rttMs / 2,
    bytesPerSecond: RELAY_BYTES_PER_SECOND,
    queueBytes: RELAY_QUEUE_BYTES,
  });
}

/**
 * For each round trip: a fresh gateway and agent whose connection crosses a relay, a second relay
 * in front of the upstream, one tunnel download and upload not counted (the other rows have their
 * warm-up burst), then `transfers` times a plain download, a tunnel download, a plain upload and a
 * tunnel upload, so that each tunnel transfer is compared with the plain one just before it.
 */
export async function measureRelay(
  children: Children,
  dir: string,
  upstreamPort: number,
  largeFile: string,
  transfers: number,
): Promise<RelayRun> {
  const started = performance.now();
  const pairs: RelayPair[] = [];
  const peakMiB: RelayRun["peakMiB"] = [];
  for (const rttMs of RELAY_RTTS_MS) {
    const relays: DelayRelay[] = [];
    const relayed = (port: number) => {
      const relay = startRelay(port, rttMs);
      relays.push(relay);
      return relay.port;
    };
    try {
      const plainPort = relayed(upstreamPort);
      const plain: Target = { port: plainPort, host: `127.0.0.1:${plainPort}` };
      const tunnel = await startTunnel(children, dir, fromDist, upstreamPort, {
        label: `relay ${rttMs} ms`,
        agentDialsVia: relayed,
      });
      const through: Target = { port: tunnel.port, host: tunnel.host };
      // Both ends send a ping once connected; its pong, a round trip later, gives the windows the
      // round-trip time they need to grow.
      await Bun.sleep(4 * rttMs + 200);
      await download(through, 1);
      await upload(through, largeFile, 1);
      for (let i = 1; i <= transfers; i++) {
        for (const direction of ["download", "upload"] as const) {
          const once = (target: Target) =>
            direction === "download" ? download(target, 1) : upload(target, largeFile, 1);
          const pair = { rttMs, direction, plain: await once(plain), tunnel: await once(through) };
          console.log(
            `  relay ${rttMs} ms, ${direction} ${i}/${transfers}: tunnel ${pair.tunnel.toFixed(1)} MB/s, ` +
              `plain TCP ${pair.plain.toFixed(1)} MB/s`,
          );
          pairs.push(pair);
        }
      }
      const peak = (pid: number) => memory(pid).peakMiB;
      peakMiB.push({ rttMs, gateway: peak(tunnel.gateway.pid), agent: peak(tunnel.agent.pid) });
      await children.stop(tunnel.agent);
      await children.stop(tunnel.gateway);
    } finally {
      for (const relay of relays) relay.stop();
    }
  }
  return { pairs, peakMiB, transfers, seconds: (performance.now() - started) / 1000 };
}

interface RelaySummary {
  rttMs: number;
  direction: Direction;
  tunnel: number;
  plain: number;
  /** Median over the pairs of tunnel / plain. */
  ratio: number;
}

function summarizeRelay(pairs: RelayPair[]): RelaySummary[] {
  return RELAY_RTTS_MS.flatMap((rttMs) =>
    (["download", "upload"] as const).map((direction) => {
      const mine = pairs.filter((p) => p.rttMs === rttMs && p.direction === direction);
      return {
        rttMs,
        direction,
        tunnel: median(mine.map((p) => p.tunnel)),
        plain: median(mine.map((p) => p.plain)),
        ratio: median(mine.map((p) => p.tunnel / p.plain)),
      };
    }),
  );
}

/**
 * How much longer a transfer takes through the tunnel, from the medians, also in round trips: a
 * window that starts small and doubles once per round trip costs a few of them before the tunnel
 * reaches the rate cap, which plain TCP over the relay reaches at once.
 */
function extraTime(s: RelaySummary): string {
  const extra = LARGE_BYTES / (s.tunnel * 1e6) - LARGE_BYTES / (s.plain * 1e6);
  if (!Number.isFinite(extra)) return "fail";
  return `${extra.toFixed(2)} (${((extra * 1000) / s.rttMs).toFixed(1)})`;
}

/** The relay table, the tunnel's peak memory and the target line, for the terminal and the doc. */
export function renderRelay(run: RelayRun): string {
  const summaries = summarizeRelay(run.pairs);
  const mbit = (RELAY_BYTES_PER_SECOND * 8) / 1e6;
  const rows = summaries.map((s) => [
    `${s.rttMs} ms`,
    s.direction,
    fmt(s.tunnel, 1),
    fmt(s.plain, 1),
    fmt(s.ratio, 2),
    extraTime(s),
  ]);
  const target = summaries.find((s) => s.rttMs === RELAY_TARGET.rttMs && s.direction === "download");
  const ratio = target?.ratio ?? Number.NaN;
  const pass = ratio >= RELAY_TARGET.downloadRatio;
  const plural = run.transfers === 1 ? "" : "s";
  const peaks = run.peakMiB
    .map((p) => `${p.rttMs} ms: gateway ${fmt(p.gateway, 1)}, agent ${fmt(p.agent, 1)}`)
    .join("; ");
  return [
    `Over the delay relay (${mbit} Mbit/s each way, ${RELAY_QUEUE_BYTES / 1024} KiB queue): ` +
      `${run.transfers} transfer${plural} of 64 MiB per direction and round trip, one at a time; ` +
      `${run.seconds.toFixed(0)} s in all. Values are medians; × is the median of each tunnel ` +
      "transfer's rate over the plain TCP transfer just before it.",
    "",
    markdownTable(
      [
        "round trip",
        "direction",
        "tunnel MB/s",
        "plain TCP MB/s",
        "×",
        "tunnel's extra time, s (round trips)",
      ],
      rows,
    ),
    "",
    `Peak RSS (VmHWM) of the relayed tunnel's processes, MiB: ${peaks}.`,
    "",
    "```",
    `${pass ? "PASS" : "MISS"}  64 MiB download over the ${RELAY_TARGET.rttMs} ms relay, × plain TCP: ` +
      `${fmt(ratio, 3)} (target >= ${RELAY_TARGET.downloadRatio})`,
    "```",
  ].join("\n");
}
