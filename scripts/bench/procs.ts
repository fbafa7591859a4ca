// Child processes of the bench: each runs in its own process group so that stopping it also stops
// whatever it forked (nginx workers, sshd's per-connection children, `sleep` under ssh), and every
// one of them is stopped when the bench ends, fails or is interrupted.
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";

/** How often waitFor() looks at a child's log for the line it waits for. */
const POLL_MS = 50;

export class Child {
  readonly name: string;
  readonly proc: Subprocess<"pipe" | "ignore", number, number>;
  readonly #logs: [string, string];

  constructor(
    name: string,
    cmd: string[],
    logDir: string,
    env: Record<string, string | undefined>,
    keepStdinOpen: boolean,
  ) {
    this.name = name;
    const base = join(logDir, name.replace(/[^\w.-]+/g, "_"));
    this.#logs = [`${base}.out`, `${base}.err`];
    // Output goes to files rather than pipes: the gateway logs a line per request, and reading
    // that in the bench's own process would take CPU from the processes being measured.
    const [out, err] = this.#logs.map((file) => openSync(file, "w"));
    this.proc = Bun.spawn(cmd, {
      env: { ...process.env, ...env },
      // A fresh session: the child leads its own process group, killed as a whole in stop().
      detached: true,
      stdin: keepStdinOpen ? "pipe" : "ignore",
      stdout: out as number,
      stderr: err as number,
    });
    closeSync(out as number);
    closeSync(err as number);
  }

  get pid(): number {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The last lines of what the child printed, to explain a failure. */
  get output(): string {
    return this.#logs
      .map((file) => {
        try {
          return readFileSync(file, "utf8").slice(-4096);
        } catch {
          return "";
        }
      })
      .join("");
  }

  /** Resolves with the first output match; rejects on timeout or when the child exits first. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.#logs.map((file) => readFileSync(file, "utf8").match(pattern)).find((m) => m);
      if (found) return found;
      const why = !this.running
        ? `exited with ${this.proc.exitCode ?? this.proc.signalCode}`
        : Date.now() > deadline
          ? `nothing within ${timeoutMs} ms`
          : null;
      if (why) throw new Error(`${this.name}: ${why} (waiting for ${pattern})\n${this.output}`);
      await Bun.sleep(POLL_MS);
    }
  }

  /** SIGTERM to the whole group, SIGKILL if it is still there after `graceMs`. */
  async stop(graceMs = 3_000): Promise<void> {
    if (!this.running) return;
    signalGroup(this.pid, "SIGTERM");
    const exited = await Promise.race([
      this.proc.exited.then(() => true),
      Bun.sleep(graceMs).then(() => false),
    ]);
    if (!exited) signalGroup(this.pid, "SIGKILL");
    await this.proc.exited;
    // The leader may exit before the rest of its group (nginx workers finishing a request).
    signalGroup(this.pid, "SIGKILL");
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** Every child the bench started; stopAll() stops them newest first (clients before servers). */
export class Children {
  #all: Child[] = [];
  readonly #logDir: string;

  /** Children write their output into `logDir`. */
  constructor(logDir: string) {
    this.#logDir = logDir;
    mkdirSync(logDir, { recursive: true });
  }

  spawn(
    name: string,
    cmd: string[],
    options: { env?: Record<string, string | undefined>; keepStdinOpen?: boolean } = {},
  ): Child {
    const child = new Child(name, cmd, this.#logDir, options.env ?? {}, options.keepStdinOpen ?? false);
    this.#all.push(child);
    return child;
  }

  async stop(child: Child, graceMs?: number): Promise<void> {
    await child.stop(graceMs);
    this.#all = this.#all.filter((c) => c !== child);
  }

  async stopAll(): Promise<void> {
    const all = this.#all.reverse();
    this.#all = [];
    for (const child of all) await child.stop();
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a short command to completion (wrk, curl, version queries). It gets its own process group
 * and is killed when it outlives `timeoutMs`, so a stuck load generator cannot hang the bench.
 */
export async function run(cmd: string[], timeoutMs = 60_000): Promise<RunResult> {
  const proc = Bun.spawn(cmd, { detached: true, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  running.add(proc.pid);
  const timer = setTimeout(() => signalGroup(proc.pid, "SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
    running.delete(proc.pid);
  }
}

/** Short commands still running: killed by killRunning() when the bench is interrupted. */
const running = new Set<number>();

export function killRunning(): void {
  for (const pid of running) signalGroup(pid, "SIGKILL");
}

/** A port the kernel just handed out on loopback, for servers that cannot report their own. */
export function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, child: Child, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!child.running) throw new Error(`${child.name} exited before listening on ${port}\n${child.output}`);
    if (await canConnect(port)) return;
    await Bun.sleep(50);
  }
  throw new Error(
    `${child.name}: nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms\n${child.output}`,
  );
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}
