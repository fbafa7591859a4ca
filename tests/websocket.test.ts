// WebSockets through the real gateway and agent processes: a client upgrades on the ingress and
// talks to a WebSocket service on the device, message by message, both ways.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Agent, DOMAIN, Gateway, sha256 } from "./harness.ts";
import { closedPort, patternBytes, startWebSocketService } from "./services.ts";

let gateway: Gateway;
let agent: Agent;
let unreachable: Agent;
const service = startWebSocketService();

beforeAll(async () => {
  gateway = await Gateway.start();
  [agent, unreachable] = await Promise.all([
    Agent.start(gateway, { id: "pi-ws", to: service.port }),
    Agent.start(gateway, { id: "pi-ws-down", to: await closedPort() }),
  ]);
});

afterAll(async () => {
  await Promise.all([agent?.stop(), unreachable?.stop()]);
  await gateway?.stop();
  service.stop();
});

type Message = string | ArrayBuffer;

/** A client socket through the tunnel, with its messages and its close queued for the test. */
class Client {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  #messages: Message[] = [];
  #waiting: ((m: Message) => void) | null = null;

  constructor(agentId: string, path: string, protocols: string[] = []) {
    // Bun's client lets the Host header be set, so no name has to resolve to the loopback.
    this.ws = new WebSocket(`ws://127.0.0.1:${gateway.httpPort}${path}`, {
      headers: { host: `${agentId}.${DOMAIN}:${gateway.httpPort}` },
      protocols,
      perMessageDeflate: false,
    });
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = (event) => reject(new Error((event as ErrorEvent).message));
    });
    this.closed = new Promise((resolve) => {
      this.ws.onclose = resolve;
    });
    this.ws.onmessage = (event) => {
      const wake = this.#waiting;
      this.#waiting = null;
      if (wake) wake(event.data as Message);
      else this.#messages.push(event.data as Message);
    };
  }

  static async open(agentId: string, path: string, protocols?: string[]): Promise<Client> {
    const client = new Client(agentId, path, protocols);
    await client.opened;
    return client;
  }

  next(): Promise<Message> {
    const queued = this.#messages.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }
}

/** An upgrade request written by hand, to read the status and headers of a refusal. */
async function rawUpgrade(agentId: string, path: string): Promise<{ status: number; head: string }> {
  const { promise, resolve } = Promise.withResolvers<string>();
  let text = "";
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: gateway.httpPort,
    socket: {
      data(_socket, bytes) {
        text += Buffer.from(bytes).toString("latin1");
        if (text.includes("\r\n\r\n")) resolve(text);
      },
      close() {
        resolve(text);
      },
    },
  });
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${agentId}.${DOMAIN}:${gateway.httpPort}\r\nUpgrade: websocket\r\n` +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  const head = (await promise).split("\r\n\r\n")[0] as string;
  socket.end();
  return { status: Number(head.split(" ")[1]), head: head.toLowerCase() };
}

describe("WebSockets through the tunnel", () => {
  test("text arrives as text and binary as binary", async () => {
    const client = await Client.open("pi-ws", "/types");
    client.ws.send("héllo ✓");
    expect(await client.next()).toBe("héllo ✓");
    client.ws.send(new Uint8Array([0, 1, 2, 255]));
    const binary = await client.next();
    expect(binary).toBeInstanceOf(ArrayBuffer);
    expect([...new Uint8Array(binary as ArrayBuffer)]).toEqual([0, 1, 2, 255]);
    client.ws.send("");
    expect(await client.next()).toBe("");
    client.ws.close();
  });

  test("the service sees the client's host and the forwarding headers", async () => {
    const client = await Client.open("pi-ws", "/headers?x=1");
    const headers = await service.handshake("/headers");
    expect(headers.get("host")).toBe(`pi-ws.${DOMAIN}:${gateway.httpPort}`);
    expect(headers.get("x-forwarded-for")).toBe("127.0.0.1");
    expect(headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    client.ws.close();
  });

  test("a 4 MiB binary and a 3 MiB text message arrive byte-exact both ways", async () => {
    const client = await Client.open("pi-ws", "/large");
    const big = patternBytes(4 * 1024 * 1024, 11);
    client.ws.send(big);
    const echoed = await client.next();
    expect(echoed).toBeInstanceOf(ArrayBuffer);
    expect((echoed as ArrayBuffer).byteLength).toBe(big.byteLength);
    expect(await sha256(echoed as ArrayBuffer)).toBe(await sha256(big));
    expect(service.received("/large")).toEqual([await sha256(big)]);

    const text = "ü".repeat(1536 * 1024);
    client.ws.send(text);
    expect(await client.next()).toBe(text);
    client.ws.close();
  }, 30_000);

  test("many messages arrive in order, text and binary interleaved", async () => {
    const client = await Client.open("pi-ws", "/many");
    const count = 2000;
    for (let i = 0; i < count; i++) {
      if (i % 2 === 0) client.ws.send(`message ${i}`);
      else client.ws.send(patternBytes(1 + ((i * 97) % 3000), i));
    }
    for (let i = 0; i < count; i++) {
      const message = await client.next();
      if (i % 2 === 0) {
        expect(message).toBe(`message ${i}`);
      } else {
        expect(new Uint8Array(message as ArrayBuffer)).toEqual(
          patternBytes(1 + ((i * 97) % 3000), i) as Uint8Array<ArrayBuffer>,
        );
      }
    }
    client.ws.close();
  }, 30_000);

  test("the subprotocol the service accepts is the one the client gets", async () => {
    const chat = await Client.open("pi-ws", "/protocol", ["chat.v1", "chat.v2"]);
    expect(chat.ws.protocol).toBe("chat.v2");
    expect((await service.handshake("/protocol")).get("sec-websocket-protocol")).toBe("chat.v1, chat.v2");
    chat.ws.close();

    const plain = await Client.open("pi-ws", "/no-protocol");
    expect(plain.ws.protocol).toBe("");
    plain.ws.close();
  });

  test("the client's close code and reason reach the service", async () => {
    const client = await Client.open("pi-ws", "/client-closes");
    client.ws.send("ping");
    expect(await client.next()).toBe("ping");
    client.ws.close(4001, "bye");
    expect(await service.closed("/client-closes")).toEqual({ code: 4001, reason: "bye" });
    expect((await client.closed).code).toBe(4001);
  });

  test("the service's close code and reason reach the client, after its last messages", async () => {
    const client = await Client.open("pi-ws", "/service-closes");
    client.ws.send("last words");
    client.ws.send("close 4002 done here");
    expect(await client.next()).toBe("last words");
    const closed = await client.closed;
    expect(closed.code).toBe(4002);
    expect(closed.reason).toBe("done here");
  });

  test("a client that stops reading stalls the service, and everything arrives once it reads", async () => {
    const client = await Client.open("pi-ws", "/flood");
    client.ws.pause();
    const total = 64;
    client.ws.send(`flood ${total}`);
    // Credit, paused sockets and TCP buffers hold a few MiB at most: the service must stall far
    // below what it wants to send, however long it is given.
    await Bun.sleep(1500);
    expect(service.flooded("/flood")).toBeLessThan(48 * 1024 * 1024);
    client.ws.resume();
    const expected = await sha256(patternBytes(1024 * 1024, 3));
    for (let i = 0; i < total; i++) {
      expect(await sha256((await client.next()) as ArrayBuffer)).toBe(expected);
    }
    expect(service.flooded("/flood")).toBe(total * 1024 * 1024);
    client.ws.close();
  }, 60_000);

  test("an unreachable service refuses the upgrade with 502", async () => {
    const { status, head } = await rawUpgrade("pi-ws-down", "/x");
    expect(status).toBe(502);
    expect(head).toContain("x-tunnel-error: local_unreachable");
    const client = new Client("pi-ws-down", "/x");
    await expect(client.opened).rejects.toThrow(/502/);
    await client.closed;
  });

  test("a service that refuses the upgrade passes its status through", async () => {
    const { status, head } = await rawUpgrade("pi-ws", "/refuse");
    expect(status).toBe(403);
    expect(head).toMatch(/x-request-id: [0-9a-f-]{36}/);
  });

  test("losing the agent closes the client's socket", async () => {
    const short = await Agent.start(gateway, { id: "pi-ws-short", to: service.port });
    const client = await Client.open("pi-ws-short", "/agent-lost");
    client.ws.send("still there?");
    expect(await client.next()).toBe("still there?");
    await short.proc.stop("SIGKILL");
    expect((await client.closed).code).toBe(1011);
  });
});
