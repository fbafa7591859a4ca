// What the figures were measured on: they mean little without the machine and the versions.
import { readFileSync } from "node:fs";
import { availableParallelism, release } from "node:os";
import { run } from "./procs.ts";

export interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  bun: string;
  nginx: string;
  wrk: string;
  openssh: string;
  curl: string;
}

export async function describeMachine(): Promise<Machine> {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  const [nginx, wrk, ssh, curl] = await Promise.all([
    run(["/usr/sbin/nginx", "-v"]),
    run(["wrk", "-v"]),
    run(["ssh", "-V"]),
    run(["curl", "--version"]),
  ]);
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    cpus: availableParallelism(),
    cpuModel: cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown",
    memoryGiB: Number(meminfo.match(/^MemTotal:\s+(\d+) kB/m)?.[1] ?? 0) / 1024 / 1024,
    kernel: release(),
    // The binaries embed the runtime that built them: the pinned Bun running this script.
    bun: Bun.version,
    nginx: (nginx.stderr + nginx.stdout).match(/nginx\/(\S+)/)?.[1] ?? "unknown",
    // `wrk -v` prints its version and then the usage, exiting 1.
    wrk: (wrk.stdout + wrk.stderr).match(/^wrk (?:debian\/)?(\S+)/m)?.[1] ?? "unknown",
    openssh: (ssh.stderr + ssh.stdout).match(/OpenSSH_(\S+?)[\s,]/)?.[1] ?? "unknown",
    curl: curl.stdout.match(/^curl (\S+)/)?.[1] ?? "unknown",
  };
}

export function machineLine(m: Machine): string {
  return (
    `${m.date}; ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB.toFixed(1)} GiB RAM, Linux ${m.kernel}; ` +
    `Bun ${m.bun}, nginx ${m.nginx}, wrk ${m.wrk}, OpenSSH ${m.openssh}, curl ${m.curl}`
  );
}
