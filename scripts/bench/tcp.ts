// The TCP rows: 64 MiB downloads and uploads as raw TCP streams. curl speaks HTTP/1.1 to nginx,
// but through a [[tcp]] port of the gateway (the agent exposes nginx's port with --tcp) or an
// `ssh -N -L` forward, both of which carry bytes and know nothing of HTTP; each transfer is
// compared with a direct one taken just before it.
import { join } from "node:path";
import { download, median, type Target, upload } from "./load.ts";
import type { Children } from "./procs.ts";
import { fmt, markdownTable } from "./report.ts";
import { startLocalForward, startSshd } from "./ssh.ts";
import { AGENT_ID, fromDist, startAgent, startGateway, writeCredentials } from "./tunnel.ts";

/** The rows beside the direct transfers, in the table's order. */
const ROWS = ["ssh -N -L", "tunnel [[tcp]] port"] as const;
type Row = (typeof ROWS)[number];
type Direction = "download" | "upload";

/** One transfer through a row and the direct transfer taken just before it, MB/s. */
interface TcpPair {
  row: Row;
  direction: Direction;
  measured: number;
  direct: number;
}

export interface TcpRun {
  pairs: TcpPair[];
  transfers: number;
  seconds: number;
}

/** A fresh gateway with one [[tcp]] port to the agent's `web` service, nginx's port. */
async function startTcpTunnel(children: Children, dir: string, upstreamPort: number): Promise<Target> {
  const credentials = writeCredentials(join(dir, "tunnel-tcp"));
  await Bun.write(
    credentials.config,
    `${await Bun.file(credentials.config).text()}\n[[tcp]]\nport = 0\nagent = "${AGENT_ID}"\nservice = "web"\n`,
  );
  const gateway = await startGateway(children, fromDist, "gateway (tcp)", credentials, ["--admin", "off"]);
  const [, port] = await gateway.child.waitFor(/tcp port for \S+ listening on [^\s]+:(\d+)/);
  await startAgent(children, fromDist, "agent (tcp)", credentials, gateway.wsPort, upstreamPort, [
    "--tcp",
    `web=127.0.0.1:${upstreamPort}`,
  ]);
  return { port: Number(port), host: `127.0.0.1:${port}` };
}

/**
 * Starts both rows, sends one download and one upload through each that are not counted, then
 * `transfers` times, for each direction, a direct transfer followed by one through each row.
 */
export async function measureTcp(
  children: Children,
  dir: string,
  upstreamPort: number,
  largeFile: string,
  transfers: number,
): Promise<TcpRun> {
  const started = performance.now();
  // Its own server: the main rows' sshd lives in dir/ssh.
  const sshd = await startSshd(children, join(dir, "tcp"));
  const sshPort = await startLocalForward(children, sshd, upstreamPort);
  const targets: Record<Row, Target> = {
    "ssh -N -L": { port: sshPort, host: `127.0.0.1:${sshPort}` },
    "tunnel [[tcp]] port": await startTcpTunnel(children, dir, upstreamPort),
  };
  const direct: Target = { port: upstreamPort, host: `127.0.0.1:${upstreamPort}` };
  const once = (target: Target, direction: Direction) =>
    direction === "download" ? download(target, 1) : upload(target, largeFile, 1);
  for (const row of ROWS) {
    await once(targets[row], "download");
    await once(targets[row], "upload");
  }
  const pairs: TcpPair[] = [];
  for (let i = 1; i <= transfers; i++) {
    for (const direction of ["download", "upload"] as const) {
      for (const row of ROWS) {
        const pair = { row, direction, direct: await once(direct, direction), measured: 0 };
        pair.measured = await once(targets[row], direction);
        console.log(
          `  tcp ${direction} ${i}/${transfers}: ${row} ${pair.measured.toFixed(1)} MB/s, ` +
            `direct ${pair.direct.toFixed(1)} MB/s`,
        );
        pairs.push(pair);
      }
    }
  }
  return { pairs, transfers, seconds: (performance.now() - started) / 1000 };
}

export function renderTcp(run: TcpRun): string {
  const cell = (row: Row, direction: Direction, pick: (p: TcpPair) => number) =>
    median(run.pairs.filter((p) => p.row === row && p.direction === direction).map(pick));
  const directRate = (direction: Direction) =>
    median(run.pairs.filter((p) => p.direction === direction).map((p) => p.direct));
  const rows = [
    ["direct", fmt(directRate("download"), 0), "1.00", fmt(directRate("upload"), 0), "1.00"],
    ...ROWS.map((row) => [
      row,
      fmt(
        cell(row, "download", (p) => p.measured),
        0,
      ),
      fmt(
        cell(row, "download", (p) => p.measured / p.direct),
        2,
      ),
      fmt(
        cell(row, "upload", (p) => p.measured),
        0,
      ),
      fmt(
        cell(row, "upload", (p) => p.measured / p.direct),
        2,
      ),
    ]),
  ];
  return [
    `${run.transfers} transfers of 64 MiB per direction and row, one at a time, ${run.seconds.toFixed(0)} s in ` +
      "all. MB/s are medians; × is the median of each transfer's rate over the direct one just before it.",
    "",
    markdownTable(["path", "download MB/s", "× direct", "upload MB/s", "× direct"], rows),
  ].join("\n");
}
