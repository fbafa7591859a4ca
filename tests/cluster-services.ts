// The real components a cluster runs on, started for a test on free loopback ports: redis-server
// and HAProxy from Debian (installed by `make test`), each stopped and started at will.
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc } from "./harness.ts";

/** A port free right now on 127.0.0.1, for a server that needs its port up front. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** One redis-server, without persistence, that can be stopped and started on the same port. */
export class Redis {
  readonly port: number;
  #proc: Proc | undefined;

  private constructor(port: number) {
    this.port = port;
  }

  static async start(): Promise<Redis> {
    const redis = new Redis(await freePort());
    await redis.resume();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async resume(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    this.#proc = new Proc(["redis-server", ...args], {});
    await this.#proc.waitFor(/Ready to accept connections/);
  }

  async stop(): Promise<void> {
    await this.#proc?.stop("SIGKILL");
    this.#proc = undefined;
  }
}

export interface HaproxyFrontend {
  /** HTTP for an ingress (a dead backend's requests get HAProxy's 502), TCP for agents' WebSockets. */
  mode: "http" | "tcp";
  /** The backends' ports on 127.0.0.1, served round robin. */
  backends: number[];
}

/**
 * HAProxy, one listener per frontend, round robin over its backends, with health checks quick
 * enough that a dead backend leaves the rotation within a second, and a connection refused by
 * one backend retried on another.
 */
export class Haproxy {
  readonly ports: number[];
  readonly #proc: Proc;

  private constructor(ports: number[], proc: Proc) {
    this.ports = ports;
    this.#proc = proc;
  }

  static async start(frontends: HaproxyFrontend[]): Promise<Haproxy> {
    const ports = await Promise.all(frontends.map(() => freePort()));
    const dir = mkdtempSync(join(tmpdir(), "indranet-haproxy-"));
    const config = join(dir, "haproxy.cfg");
    writeFileSync(config, haproxyConfig(frontends, ports));
    const proc = new Proc(["haproxy", "-db", "-f", config], {});
    const haproxy = new Haproxy(ports, proc);
    await haproxy.#listening();
    return haproxy;
  }

  stop(): Promise<void> {
    return this.#proc.stop();
  }

  async #listening(): Promise<void> {
    for (const port of this.ports) {
      for (let i = 0; ; i++) {
        try {
          const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
          socket.end();
          break;
        } catch (error) {
          if (i > 50)
            throw new Error(`haproxy did not listen on ${port}: ${error}\n${this.#proc.output.text}`);
          await Bun.sleep(100);
        }
      }
    }
  }
}

function haproxyConfig(frontends: HaproxyFrontend[], ports: number[]): string {
  const lines = [
    "global",
    "  maxconn 4096",
    "defaults",
    "  timeout connect 1s",
    "  timeout client 1h",
    "  timeout server 1h",
    "  timeout tunnel 1h",
    "  retries 3",
    "  option redispatch",
  ];
  frontends.forEach((frontend, i) => {
    lines.push(
      `listen front${i}`,
      `  bind 127.0.0.1:${ports[i]}`,
      `  mode ${frontend.mode}`,
      "  balance roundrobin",
    );
    frontend.backends.forEach((port, j) => {
      lines.push(`  server b${j} 127.0.0.1:${port} check inter 300ms fall 1 rise 1`);
    });
  });
  return `${lines.join("\n")}\n`;
}
