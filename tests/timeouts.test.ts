// What each timeout measures, against the real processes: the head timeout is the service's
// silence (never the client's upload time), the idle timeout cuts whatever stalls, whoever stalls.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, adminUrl, DOMAIN, eventually, Gateway, scrape } from "./harness.ts";
import { patternBytes, startEchoService } from "./services.ts";

const echo = startEchoService();
let gateway: Gateway;
let agent: Agent;
let admin: string;

beforeAll(async () => {
  gateway = await Gateway.start({
    args: ["--request-timeout", "1", "--idle-timeout", "2", "--admin", "127.0.0.1:0"],
  });
  admin = await adminUrl(gateway.proc);
  agent = await Agent.start(gateway, { id: "pi-timeouts", to: echo.port });
});

afterAll(async () => {
  await agent?.stop();
  await gateway?.stop();
  echo.stop(true);
});

async function openStreams(): Promise<number> {
  return (await scrape(admin)).get("indranet_streams_open") ?? Number.NaN;
}

/** A raw client socket, for clients that stall in ways fetch cannot: stop sending, stop reading. */
async function rawClient(): Promise<{
  socket: Bun.Socket<undefined>;
  received: () => string;
  bytes: () => number;
  closed: Promise<void>;
}> {
  let text = "";
  let bytes = 0;
  const closed = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: gateway.httpPort,
    socket: {
      data(_socket, chunk) {
        bytes += chunk.byteLength;
        if (text.length < 4096) text += new TextDecoder().decode(chunk.subarray(0, 4096));
      },
      close: () => closed.resolve(),
      error: () => closed.resolve(),
    },
  });
  return { socket, received: () => text, bytes: () => bytes, closed: closed.promise };
}

describe("the head timeout counts the service's silence", () => {
  test("an upload slower than --request-timeout completes", async () => {
    // 6 MB at 2 MB/s: three times the head timeout, the case curl users hit first.
    const body = patternBytes(6 * 1024 * 1024, 3);
    const file = join(gateway.dir, "upload.bin");
    writeFileSync(file, body);
    const proc = Bun.spawn(
      [
        "curl",
        "-sS",
        "--limit-rate",
        "2M",
        "-H",
        `host: pi-timeouts.${DOMAIN}`,
        "--data-binary",
        `@${file}`,
        `http://127.0.0.1:${gateway.httpPort}/upload`,
        "-w",
        "\n%{http_code}",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    const [json, status] = out.trim().split("\n");
    expect(status).toBe("200");
    expect(JSON.parse(json as string)).toEqual({
      length: body.byteLength,
      sha256: new Bun.CryptoHasher("sha256").update(body).digest("hex"),
    });
  }, 30_000);

  test("a service that stops taking the body and never answers gets 504 timeout", async () => {
    // The service reads nothing: once the kernel buffers fill, the agent grants no more credit.
    const sink = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: (socket) => socket.pause(), data() {} },
    });
    const stuck = await Agent.start(gateway, { id: "pi-sink", to: sink.port });
    try {
      const client = await rawClient();
      const size = 256 * 1024 * 1024;
      client.socket.write(
        `POST /upload HTTP/1.1\r\nhost: pi-sink.${DOMAIN}\r\ncontent-length: ${size}\r\n\r\n`,
      );
      // Keep sending while the gateway reads: it stops once credit is gone.
      const chunk = new Uint8Array(64 * 1024);
      const feeder = setInterval(() => client.socket.write(chunk), 5);
      try {
        await eventually(async () => expect(client.received()).toContain("HTTP/1.1 504"), 15_000);
      } finally {
        clearInterval(feeder);
      }
      expect(client.received().toLowerCase()).toContain("x-tunnel-error: timeout");
      client.socket.end();
      await eventually(async () => expect(await openStreams()).toBe(0));
    } finally {
      await stuck.stop();
      sink.stop(true);
    }
  }, 30_000);
});

describe("the idle timeout cuts what stalls", () => {
  test("an upload that stalls midway is cut", async () => {
    const client = await rawClient();
    client.socket.write(
      `POST /upload HTTP/1.1\r\nhost: pi-timeouts.${DOMAIN}\r\ncontent-length: 1000000\r\n\r\n`,
    );
    client.socket.write(new Uint8Array(100_000));
    // Nothing more is sent: the stream moves no bytes for --idle-timeout (2 s).
    await eventually(async () => expect(client.received()).toContain("HTTP/1.1 504"), 15_000);
    expect(client.received()).toContain("idle");
    client.socket.end();
    await eventually(async () => expect(await openStreams()).toBe(0));
  }, 30_000);

  test("a client that declares a small body and never sends it is cut", async () => {
    const client = await rawClient();
    client.socket.write(
      `POST /upload HTTP/1.1\r\nhost: pi-timeouts.${DOMAIN}\r\ncontent-length: 100\r\n\r\n`,
    );
    await eventually(async () => expect(client.received()).toContain("HTTP/1.1 504"), 15_000);
    client.socket.end();
    await eventually(async () => expect(await openStreams()).toBe(0));
  }, 30_000);

  test("a client that stops reading is disconnected, and its stream is forgotten", async () => {
    const size = 64 * 1024 * 1024;
    const client = await rawClient();
    client.socket.write(`GET /bytes/${size} HTTP/1.1\r\nhost: pi-timeouts.${DOMAIN}\r\n\r\n`);
    client.socket.pause();
    await eventually(async () => expect(await openStreams()).toBe(0), 20_000);
    client.socket.resume();
    await client.closed;
    expect(client.received()).toContain("HTTP/1.1 200");
    expect(client.bytes()).toBeLessThan(size);
  }, 40_000);

  test("a client that leaves a whole small response unread is disconnected", async () => {
    // 200 KiB: all of it reaches the gateway (one window), so the stream itself is over.
    const client = await rawClient();
    client.socket.write(`GET /bytes/${200 * 1024} HTTP/1.1\r\nhost: pi-timeouts.${DOMAIN}\r\n\r\n`);
    client.socket.pause();
    await eventually(async () => expect(await openStreams()).toBe(0), 20_000);
    client.socket.resume();
    // Bun's own timer (here --idle-timeout, 2 s) closes the connection once it is read or not.
    await client.closed;
    expect(client.received()).toContain("HTTP/1.1 200");
  }, 40_000);
});
