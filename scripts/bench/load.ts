// The load: wrk for the 1 KiB (or 64 KiB) GETs, curl for the 64 MiB transfers. A failed run yields NaN (shown
// as "fail" in the table) with a warning, so one broken row does not lose the others.
import { LARGE_BYTES, LARGE_PATH, SMALL_PATH, UPLOAD_PATH } from "./nginx.ts";
import { run } from "./procs.ts";

/** Where a row sends its requests: always a loopback port. */
export interface Target {
  port: number;
  /** The Host header: the tunnel routes by it, the others ignore it. */
  host: string;
}

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

const FAILED_WRK: WrkResult = { rps: Number.NaN, p50Ms: Number.NaN, p99Ms: Number.NaN };

function url(target: Target, path: string): string {
  return `http://127.0.0.1:${target.port}${path}`;
}

export async function wrk(
  target: Target,
  connections: number,
  seconds: number,
  path = SMALL_PATH,
): Promise<WrkResult> {
  const threads = Math.min(2, connections);
  const result = await run(
    [
      "wrk",
      `-t${threads}`,
      `-c${connections}`,
      `-d${seconds}s`,
      "--timeout",
      "5s",
      "--latency",
      "-H",
      `Host: ${target.host}`,
      url(target, path),
    ],
    (seconds + 15) * 1000,
  );
  const parsed = parseWrk(result.stdout);
  if (result.code !== 0 || parsed === null) {
    console.warn(`  wrk -c${connections} failed (exit ${result.code}): ${result.stderr || result.stdout}`);
    return FAILED_WRK;
  }
  // Errors would make the rate meaningless (fast error answers are not the service's answers).
  const errors = result.stdout.match(/Non-2xx or 3xx responses: (\d+)|Socket errors: .*/g);
  if (errors) {
    console.warn(`  wrk -c${connections}: ${errors.join("; ")}`);
    if (/Non-2xx/.test(errors.join())) return FAILED_WRK;
  }
  return parsed;
}

/** Reads "Requests/sec:" and the 50% / 99% lines of `--latency`. */
export function parseWrk(out: string): WrkResult | null {
  const rps = out.match(/Requests\/sec:\s+([\d.]+)/);
  const p50 = out.match(/^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m);
  const p99 = out.match(/^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m);
  if (!rps?.[1] || !p50 || !p99) return null;
  return { rps: Number(rps[1]), p50Ms: toMs(p50), p99Ms: toMs(p99) };
}

function toMs(match: RegExpMatchArray): number {
  const value = Number(match[1]);
  const unit = match[2];
  return unit === "us" ? value / 1000 : unit === "s" ? value * 1000 : value;
}

/** One request through the target first, so that a path that does not work fails with its answer. */
export async function expectServed(target: Target): Promise<void> {
  const res = await fetch(url(target, SMALL_PATH), {
    headers: { host: target.host },
    signal: AbortSignal.timeout(10_000),
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`port ${target.port} answered ${res.status}: ${body}`);
}

/** Downloads the 64 MiB file `times` times; the median rate in MB/s (10^6 bytes). */
export async function download(target: Target, times: number): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < times; i++) {
    rates.push(await curlRate(target, ["-o", "/dev/null", url(target, LARGE_PATH)], "download"));
  }
  return median(rates);
}

/**
 * Uploads the 64 MiB file `times` times; the median rate in MB/s. `Expect:` is sent empty: curl
 * would otherwise wait up to a second for a "100 Continue" on each upload.
 */
export async function upload(target: Target, file: string, times: number): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < times; i++) {
    const args = ["-o", "/dev/null", "-X", "POST", "-H", "Expect:", "-T", file, url(target, UPLOAD_PATH)];
    rates.push(await curlRate(target, args, "upload"));
  }
  return median(rates);
}

async function curlRate(target: Target, args: string[], what: "download" | "upload"): Promise<number> {
  const result = await run(
    [
      "curl",
      "-sS",
      "--max-time",
      "60",
      "-H",
      `Host: ${target.host}`,
      "-w",
      "%{http_code} %{size_download} %{size_upload} %{time_total}",
      ...args,
    ],
    70_000,
  );
  const [code, down, up, seconds] = result.stdout.trim().split(" ").map(Number);
  const bytes = what === "download" ? down : up;
  if (result.code !== 0 || code !== 200 || bytes !== LARGE_BYTES || !seconds) {
    console.warn(`  ${what} failed: exit ${result.code}, '${result.stdout.trim()}' ${result.stderr.trim()}`);
    return Number.NaN;
  }
  return LARGE_BYTES / seconds / 1e6;
}

/** Median of the finite values; NaN when there are none. */
export function median(values: number[]): number {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = finite.length >> 1;
  return finite.length % 2
    ? (finite[mid] as number)
    : ((finite[mid - 1] as number) + (finite[mid] as number)) / 2;
}
