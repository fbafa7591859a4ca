// TCP tunnels through the real gateway and agent processes: Debian's sshd and ssh/scp through a
// [[tcp]] port, many sessions at once, half-close, refusals, and one stalled reader beside a
// stream that keeps moving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, Subprocess } from "bun";
import { Agent, Gateway, sha256 } from "./harness.ts";
import { RogueAgent } from "./rogue.ts";
import { closedPort, patternBytes } from "./services.ts";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "indranet-tcp-"));

let sshd: Subprocess;
let gateway: Gateway;
let agent: Agent;
const ports: Record<string, number> = {};

/** Answers once the client has shut its write side: the bytes it read, reversed, then its own FIN. */
const afterEof = Bun.listen<{ got: Uint8Array[] }>({
  hostname: "127.0.0.1",
  port: 0,
  allowHalfOpen: true,
  socket: {
    open: (socket) => {
      socket.data = { got: [] };
    },
    data: (socket, bytes) => void socket.data.got.push(bytes),
    end: (socket) => {
      socket.write(Buffer.concat(socket.data.got).reverse());
      socket.end();
    },
  },
});

const BLOCK = patternBytes(MiB);

/** Sends the number of MiB asked for in its first line (BLOCK after BLOCK), then closes. */
const source = Bun.listen<{ blocks: number; at: number }>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data: (socket, bytes) => {
      socket.data = { blocks: Number(new TextDecoder().decode(bytes).trim()), at: 0 };
      pushSource(socket);
    },
    drain: (socket) => pushSource(socket),
  },
});

function pushSource(socket: Socket<{ blocks: number; at: number }>): void {
  const state = socket.data;
  while (state.blocks > 0) {
    const n = socket.write(BLOCK.subarray(state.at));
    state.at += n;
    if (state.at < BLOCK.byteLength) return;
    state.at = 0;
    state.blocks--;
  }
  socket.end();
}

async function startSshd(): Promise<number> {
  const port = await closedPort();
  const keygen = (file: string) =>
    Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, file)]);
  keygen("host_key");
  keygen("client_key");
  writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client_key.pub")));
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host_key")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PidFile none",
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "MaxStartups 100",
      "MaxSessions 100",
      "Subsystem sftp internal-sftp",
      "",
    ].join("\n"),
  );
  // Run as root, sshd wants its privilege separation directory.
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true });
  sshd = Bun.spawn(["/usr/sbin/sshd", "-f", join(dir, "sshd_config"), "-D", "-e"], {
    stdout: "ignore",
    stderr: "pipe",
  });
  // Ready once it accepts a connection.
  for (let i = 0; i < 100; i++) {
    const up = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (s) => {
        s.end();
        return true;
      },
      () => false,
    );
    if (up) return port;
    await Bun.sleep(50);
  }
  throw new Error(`sshd did not start: ${await new Response(sshd.stderr as ReadableStream).text()}`);
}

const SSH_OPTIONS = [
  "-i",
  join(dir, "client_key"),
  "-o",
  "StrictHostKeyChecking=no",
  "-o",
  "UserKnownHostsFile=/dev/null",
  "-o",
  "BatchMode=yes",
  "-o",
  "LogLevel=ERROR",
];

async function run(cmd: string[], timeoutMs = 80_000): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout: timeoutMs });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out, err };
}

function ssh(command: string): Promise<{ code: number; out: string; err: string }> {
  return run(["ssh", ...SSH_OPTIONS, "-p", String(ports.ssh), "127.0.0.1", command]);
}

/** A raw client on a tunnel port: what it read, and whether the gateway closed it. */
class RawClient {
  readonly received: Uint8Array[] = [];
  readonly closed = Promise.withResolvers<void>();
  onDrain = () => {};
  socket!: Socket<RawClient>;

  static async open(port: number, options: { paused?: boolean } = {}): Promise<RawClient> {
    const client = new RawClient();
    client.socket = await Bun.connect<RawClient>({
      hostname: "127.0.0.1",
      port,
      data: client,
      allowHalfOpen: true,
      socket: {
        open: (socket) => {
          if (options.paused) socket.pause();
        },
        data: (socket, bytes) => void socket.data.received.push(bytes),
        drain: (socket) => socket.data.onDrain(),
        end: (socket) => {
          socket.end();
        },
        close: (socket) => socket.data.closed.resolve(),
      },
    });
    return client;
  }

  get bytes(): Uint8Array {
    return Buffer.concat(this.received);
  }
}

/** Bounded: a hang fails the test instead of stalling the suite. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    Bun.sleep(ms).then(() => {
      throw new Error(`${what} did not happen within ${ms} ms`);
    }),
  ]);
}

beforeAll(async () => {
  const sshPort = await startSshd();
  const routes = [
    ["ssh", "pi-tcp", "ssh"],
    ["echo", "pi-tcp", "echo"],
    ["source", "pi-tcp", "source"],
    ["unknown", "pi-tcp", "telnet"],
    ["absent", "ghost", "ssh"],
    ["later", "pi-later", "echo"],
    ["old", "pi-old", "ssh"],
    ["walled", "pi-walled", "echo"],
  ];
  gateway = await Gateway.start({
    toml: `${routes
      .map(([, agentId, service]) => `\n[[tcp]]\nport = 0\nagent = "${agentId}"\nservice = "${service}"\n`)
      .join("")}\n[agents."pi-walled"]\ndeny = ["127.0.0.0/8"]\n`,
  });
  await Promise.all(
    routes.map(async ([name, agentId, service]) => {
      const [, port] = await gateway.proc.waitFor(
        new RegExp(`tcp port for ${agentId}/${service} listening on [^\\s]+:(\\d+)`),
      );
      ports[name as string] = Number(port);
    }),
  );
  agent = await Agent.start(gateway, {
    id: "pi-tcp",
    to: await closedPort(),
    args: [
      "--tcp",
      `ssh=127.0.0.1:${sshPort}`,
      "--tcp",
      `echo=127.0.0.1:${afterEof.port}`,
      "--tcp",
      `source=127.0.0.1:${source.port}`,
    ],
  });
}, 30_000);

afterAll(async () => {
  await agent?.stop();
  await gateway?.stop();
  sshd?.kill();
  afterEof.stop(true);
  source.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

describe("ssh through a TCP tunnel", () => {
  test("runs a command", async () => {
    const result = await ssh("echo hello");
    expect(result.err).toBe("");
    expect(result.out).toBe("hello\n");
    expect(result.code).toBe(0);
  }, 30_000);

  test("copies 64 MiB each way with scp, byte for byte", async () => {
    const upload = join(dir, "upload.bin");
    const back = join(dir, "back.bin");
    const data = patternBytes(64 * MiB, 11);
    writeFileSync(upload, data);
    const scp = ["scp", ...SSH_OPTIONS, "-P", String(ports.ssh)];
    const up = await run([...scp, upload, `127.0.0.1:${join(dir, "remote.bin")}`], 60_000);
    expect(up.err).toBe("");
    const down = await run([...scp, `127.0.0.1:${join(dir, "remote.bin")}`, back], 60_000);
    expect(down.err).toBe("");
    const expected = await sha256(data);
    expect(await sha256(readFileSync(join(dir, "remote.bin")))).toBe(expected);
    expect(await sha256(readFileSync(back))).toBe(expected);
  }, 60_000);

  test("keeps 20 sessions open at once", async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => ssh(`echo session-${i}`)));
    results.forEach((result, i) => {
      expect(result.out).toBe(`session-${i}\n`);
      expect(result.code).toBe(0);
    });
    // sshd sets each session up in turn: on a loaded machine that is seconds apiece.
  }, 90_000);
});

describe("TCP streams", () => {
  test("a client that shuts its write side still gets the whole answer", async () => {
    const client = await RawClient.open(ports.echo as number);
    const sent = patternBytes(3 * MiB, 5);
    let offset = 0;
    const drained = Promise.withResolvers<void>();
    const pushAll = () => {
      while (offset < sent.byteLength) {
        const n = client.socket.write(sent.subarray(offset));
        offset += n;
        if (n === 0) return;
      }
      client.socket.shutdown();
      drained.resolve();
    };
    client.onDrain = pushAll;
    pushAll();
    await within(client.closed.promise, 30_000, "the answer after a half-close");
    expect(await sha256(client.bytes)).toBe(await sha256(Buffer.from(sent).reverse()));
  }, 40_000);

  test("a port whose service the agent does not serve closes the client's connection at once", async () => {
    const client = await RawClient.open(ports.unknown as number);
    await within(client.closed.promise, 5_000, "the close");
    expect(client.bytes.byteLength).toBe(0);
    await gateway.proc.waitFor(
      /tcp pi-tcp\/telnet 127\.0\.0\.1 in=0B out=0B .*error="the agent does not serve 'telnet'"/,
    );
  }, 10_000);

  test("an agent's deny list refuses a TCP client before anything is opened", async () => {
    const client = await RawClient.open(ports.walled as number);
    await within(client.closed.promise, 5_000, "the close");
    expect(client.bytes.byteLength).toBe(0);
    await gateway.proc.waitFor(
      /tcp pi-walled\/echo 127\.0\.0\.1 .*error="forbidden by the agent's address lists"/,
    );
  }, 10_000);

  test("a port whose agent is not connected closes the client's connection at once", async () => {
    const client = await RawClient.open(ports.absent as number);
    await within(client.closed.promise, 5_000, "the close");
    expect(client.bytes.byteLength).toBe(0);
  }, 10_000);

  test("an agent from before TCP tunnels is never asked for a TCP stream", async () => {
    // Its ConnectRequest lists no services, as every release before this one.
    const old = await RogueAgent.connect(gateway.wsUrl, "pi-old");
    try {
      const client = await RawClient.open(ports.old as number);
      await within(client.closed.promise, 5_000, "the close");
      expect(client.bytes.byteLength).toBe(0);
      expect(old.requests).toEqual([]);
    } finally {
      old.close();
    }
  }, 10_000);

  test("a connection for an agent that is reconnecting waits for it", async () => {
    const args = ["--tcp", `echo=127.0.0.1:${afterEof.port}`];
    const first = await Agent.start(gateway, { id: "pi-later", to: await closedPort(), args });
    await first.stop();
    await gateway.proc.waitFor(/agent pi-later disconnected/);
    const client = await RawClient.open(ports.later as number);
    client.socket.write("xyz");
    client.socket.shutdown();
    const second = await Agent.start(gateway, { id: "pi-later", to: await closedPort(), args });
    try {
      await within(client.closed.promise, 10_000, "the answer");
      expect(new TextDecoder().decode(client.bytes)).toBe("zyx");
    } finally {
      await second.stop();
    }
  }, 30_000);

  test("one stalled reader does not hold up another stream on the same connection", async () => {
    // Never reads: its stream stops at one window, its service's socket fills up.
    const stalled = await RawClient.open(ports.source as number, { paused: true });
    stalled.socket.write("1024\n");
    await Bun.sleep(200);
    const moving = await RawClient.open(ports.source as number);
    moving.socket.write("16\n");
    await within(moving.closed.promise, 30_000, "16 MiB beside a stalled reader");
    expect(await sha256(moving.bytes)).toBe(await sha256(Buffer.concat(Array(16).fill(BLOCK))));
    stalled.socket.terminate();
  }, 40_000);

  test("a reload binds a new port and closes a removed one", async () => {
    const path = join(gateway.dir, "gateway.toml");
    const before = readFileSync(path, "utf8");
    writeFileSync(
      path,
      before.replace('agent = "ghost"\nservice = "ssh"', 'agent = "pi-tcp"\nservice = "echo"'),
    );
    gateway.proc.child.kill("SIGHUP");
    await gateway.proc.waitFor(/tcp port 0 for ghost\/ssh closed/);
    await gateway.proc.waitFor(/config reloaded/);
    const matches = [
      ...gateway.proc.output.text.matchAll(/tcp port for pi-tcp\/echo listening on [^\s]+:(\d+)/g),
    ];
    expect(matches.length).toBe(2);
    const client = await RawClient.open(Number(matches[1]?.[1]));
    client.socket.write("abc");
    client.socket.shutdown();
    await within(client.closed.promise, 5_000, "the answer");
    expect(new TextDecoder().decode(client.bytes)).toBe("cba");
  }, 20_000);
});
