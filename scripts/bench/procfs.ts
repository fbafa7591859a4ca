// Memory and CPU of a process from /proc: VmRSS (resident now), VmHWM (resident peak since start),
// and utime + stime (CPU seconds used so far).
import { readFileSync } from "node:fs";

export interface Memory {
  rssMiB: number;
  peakMiB: number;
}

export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) =>
    Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))?.[1] ?? Number.NaN);
  return { rssMiB: kib("VmRSS") / 1024, peakMiB: kib("VmHWM") / 1024 };
}

/** Clock ticks per second for /proc/PID/stat times: 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

/** CPU seconds (user + system) the process has used since it started. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name in parentheses may contain spaces: fields are counted after its ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
