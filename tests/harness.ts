// Starts the real gateway and agent as child processes on ephemeral loopback ports, the way a
// user runs them, and gives tests a way to send HTTP through the tunnel.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

const ROOT = join(import.meta.dir, "..");
export const DOMAIN = "tunnel.test";

/** How to launch a binary: from source by default, or a compiled file from dist/. */
export type Launcher = (name: "gateway" | "agent") => string[];

export const fromSource: Launcher = (name) => [process.execPath, join(ROOT, name, "main.ts")];

export const fromDist =
  (arch: "x64" | "arm64", wrap: string[] = []): Launcher =>
  (name) => [...wrap, join(ROOT, "dist", `${name}-tunnel-linux-${arch}`)];

export interface TokenSpec {
  token: string;
  secret: string;
  agents: string[];
}

export const DEFAULT_TOKEN: TokenSpec = {
  token: "tok-test",
  secret: "s3cret-s3cret-s3cret-s3cret",
  agents: ["pi-*", "device"],
};

/** Collects a child's output so tests can wait for a line and show logs when they fail. */
class Output {
  text = "";
  #waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.text += decoder.decode(chunk, { stream: true });
      this.#check();
    }
  }

  waitFor(pattern: RegExp, timeoutMs = 15_000, what = "process"): Promise<RegExpMatchArray> {
    const found = this.text.match(pattern);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${what}: no line matching ${pattern} within ${timeoutMs} ms\n${this.text}`)),
        timeoutMs,
      );
      this.#waiters.push({
        pattern,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  #check(): void {
    this.#waiters = this.#waiters.filter((w) => {
      const m = this.text.match(w.pattern);
      if (m) w.resolve(m);
      return !m;
    });
  }
}

export class Proc {
  readonly output = new Output();
  readonly child: Subprocess<"ignore", "pipe", "pipe">;
  readonly #name: string;

  constructor(cmd: string[], env: Record<string, string | undefined>) {
    this.#name = cmd.slice(0, 3).join(" ");
    this.child = Bun.spawn(cmd, {
      env: { ...process.env, NODE_ENV: "production", ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    void this.output.pump(this.child.stdout);
    void this.output.pump(this.child.stderr);
  }

  get pid(): number {
    return this.child.pid;
  }

  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray> {
    return this.output.waitFor(pattern, timeoutMs, this.#name);
  }

  async exited(timeoutMs = 10_000): Promise<number | null> {
    const timeout = Bun.sleep(timeoutMs).then(() => null);
    return Promise.race([this.child.exited, timeout]);
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    if ((await this.exited(5_000)) === null) {
      this.child.kill("SIGKILL");
      await this.child.exited;
    }
  }
}

export interface GatewayOptions {
  launcher?: Launcher;
  tokens?: TokenSpec[];
  args?: string[];
  env?: Record<string, string>;
  /** Appended to the generated config file, e.g. `[agents."pi-x"]` tables. */
  toml?: string;
  /** Agents answer at `<id>.<domain>`; DOMAIN unless given. */
  domain?: string;
  /** Reuse fixed ports, e.g. to restart a gateway where the agent expects it. */
  httpPort?: number;
  /** The loopback address both ports listen on: 127.0.0.1 unless given, e.g. ::1. */
  bind?: string;
  wsPort?: number;
}

export class Gateway {
  readonly proc: Proc;
  readonly dir: string;
  /** The listen address as the host of a URL. */
  readonly host: string;
  httpPort = 0;
  wsPort = 0;

  constructor(options: GatewayOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "indranet-gw-"));
    const configPath = join(this.dir, "gateway.toml");
    writeFileSync(configPath, tomlFor(options.tokens ?? [DEFAULT_TOKEN]) + (options.toml ?? ""), {
      mode: 0o600,
    });
    const launcher = options.launcher ?? fromSource;
    const bind = options.bind ?? "127.0.0.1";
    this.host = bind.includes(":") ? `[${bind}]` : bind;
    this.proc = new Proc(
      [
        ...launcher("gateway"),
        "serve",
        "--config",
        configPath,
        "--domain",
        options.domain ?? DOMAIN,
        "--bind",
        bind,
        "--http-port",
        String(options.httpPort ?? 0),
        "--ws-port",
        String(options.wsPort ?? 0),
        ...(options.args ?? []),
      ],
      options.env ?? {},
    );
  }

  static async start(options: GatewayOptions = {}): Promise<Gateway> {
    const gateway = new Gateway(options);
    const [, http] = await gateway.proc.waitFor(/ingress listening on https?:\/\/[^\s]+:(\d+)/);
    const [, ws] = await gateway.proc.waitFor(/agents connect to wss?:\/\/[^\s]+:(\d+)/);
    gateway.httpPort = Number(http);
    gateway.wsPort = Number(ws);
    return gateway;
  }

  get wsUrl(): string {
    return `ws://${this.host}:${this.wsPort}`;
  }

  /** Sends a request through the tunnel to `agentId`'s local service. */
  fetch(agentId: string, path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("host", `${agentId}.${DOMAIN}:${this.httpPort}`);
    return fetch(`http://${this.host}:${this.httpPort}${path}`, { ...init, headers, redirect: "manual" });
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}

export interface AgentOptions {
  launcher?: Launcher;
  id?: string;
  token?: TokenSpec;
  /** The local service: a port or HOST:PORT. */
  to: string | number;
  args?: string[];
  env?: Record<string, string>;
}

export class Agent {
  readonly proc: Proc;
  readonly id: string;

  constructor(gateway: Gateway | string, options: AgentOptions) {
    const token = options.token ?? DEFAULT_TOKEN;
    this.id = options.id ?? "pi-test";
    const launcher = options.launcher ?? fromSource;
    const url = typeof gateway === "string" ? gateway : gateway.wsUrl;
    this.proc = new Proc(
      [
        ...launcher("agent"),
        "connect",
        "--gateway",
        url,
        "--token",
        token.token,
        "--id",
        this.id,
        "--to",
        String(options.to),
        ...(options.args ?? []),
      ],
      { INDRANET_SECRET: token.secret, ...options.env },
    );
  }

  /** Starts an agent and waits until the gateway routes to it. */
  static async start(gateway: Gateway, options: AgentOptions): Promise<Agent> {
    const agent = new Agent(gateway, options);
    await agent.ready();
    return agent;
  }

  ready(timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return this.proc.waitFor(/tunnel ready/, timeoutMs);
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}

export function tomlFor(tokens: TokenSpec[]): string {
  return tokens
    .map(
      (t) =>
        `[[tokens]]\ntoken = ${JSON.stringify(t.token)}\nsecret = ${JSON.stringify(t.secret)}\nagents = ${JSON.stringify(t.agents)}\n`,
    )
    .join("\n");
}

/** Polls until `check` passes, for state that settles asynchronously in another process. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await Bun.sleep(100);
    }
  }
}

export async function sha256(bytes: Uint8Array | ArrayBuffer): Promise<string> {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/** The samples of a Prometheus text page, keyed by name and labels as written. */
export async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  if (!res.headers.get("content-type")?.includes("text/plain; version=0.0.4")) {
    throw new Error(`${url}/metrics is not Prometheus text: ${res.headers.get("content-type")}`);
  }
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** The base URL of a process started with `--admin 127.0.0.1:0`, once it has logged it. */
export async function adminUrl(proc: Proc): Promise<string> {
  const [, port] = await proc.waitFor(/admin listening on http:\/\/[^\s]+:(\d+)/);
  return `http://127.0.0.1:${port}`;
}
