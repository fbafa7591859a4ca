// Agent authentication against the real gateway: each bad credential is refused with its own
// code, the agent says why and exits, and nothing gets routed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { newNonce, PROTOCOL_VERSION, signConnect } from "../shared/auth.ts";
import { ConnectError_Code as Code } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope, encodeEnvelope } from "../shared/protocol.ts";
import { Agent, DEFAULT_TOKEN, Gateway } from "./harness.ts";
import { startEchoService } from "./services.ts";

let gateway: Gateway;
const service = startEchoService();

beforeAll(async () => {
  gateway = await Gateway.start({
    tokens: [DEFAULT_TOKEN, { token: "tok-other", secret: "another-secret-another-secret", agents: ["*"] }],
    // A refused agent must not be waited for: its id is never routed, not even after a hold.
    args: ["--hold", "0"],
  });
});

afterAll(async () => {
  await gateway?.stop();
  service.stop(true);
});

interface RawConnect {
  agentId?: string;
  token?: string;
  secret?: string;
  timestampMs?: bigint;
  nonce?: Uint8Array;
  protocolVersion?: number;
}

type Answer = { code?: Code; connected: boolean };

/** Sends one hand-built ConnectRequest; the connection stays open until the caller closes it. */
async function openRaw(options: RawConnect): Promise<{ ws: WebSocket; answer: Promise<Answer> }> {
  const fields = {
    agentId: options.agentId ?? "pi-raw",
    token: options.token ?? DEFAULT_TOKEN.token,
    timestampMs: options.timestampMs ?? BigInt(Date.now()),
    nonce: options.nonce ?? newNonce(),
    protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION,
  };
  const signature = signConnect(options.secret ?? DEFAULT_TOKEN.secret, fields);
  const ws = new WebSocket(gateway.wsUrl);
  ws.binaryType = "arraybuffer";
  const answer = new Promise<Answer>((resolve, reject) => {
    ws.onmessage = (event) => {
      const message = decodeEnvelope(new Uint8Array(event.data as ArrayBuffer));
      if (message.case === "connectError") resolve({ code: message.value.code, connected: false });
      else resolve({ connected: message.case === "control" && message.value.kind.case === "connected" });
    };
    ws.onclose = () => reject(new Error("closed without an answer"));
  });
  await new Promise((resolve) => {
    ws.onopen = resolve;
  });
  ws.send(encodeEnvelope({ case: "connect", value: { ...fields, signature, agentVersion: "test" } }));
  return { ws, answer };
}

/** Returns what the gateway answered to one ConnectRequest. */
async function rawConnect(options: RawConnect): Promise<Answer> {
  const { ws, answer } = await openRaw(options);
  try {
    return await answer;
  } finally {
    ws.close();
  }
}

async function expectNotRouted(agentId: string): Promise<void> {
  const res = await gateway.fetch(agentId, "/");
  expect(res.status).toBe(404);
  expect(res.headers.get("x-tunnel-error")).toBe("agent_not_connected");
}

describe("agent authentication", () => {
  test("a correct credential connects", async () => {
    expect(await rawConnect({})).toEqual({ connected: true });
  });

  test("a wrong secret is refused: the agent prints the reason and exits non-zero", async () => {
    const agent = new Agent(gateway, {
      id: "pi-wrong",
      to: service.port,
      token: { ...DEFAULT_TOKEN, secret: "not-the-right-secret-at-all" },
    });
    expect(await agent.proc.exited(15_000)).toBe(1);
    expect(agent.proc.output.text).toContain("BAD_SIGNATURE");
    expect(agent.proc.output.text).not.toContain(DEFAULT_TOKEN.secret);
    await expectNotRouted("pi-wrong");
  });

  test("an unknown token is refused", async () => {
    const agent = new Agent(gateway, {
      id: "pi-unknown",
      to: service.port,
      token: { token: "tok-nobody", secret: "whatever-whatever-whatever", agents: [] },
    });
    expect(await agent.proc.exited(15_000)).toBe(1);
    expect(agent.proc.output.text).toContain("UNKNOWN_TOKEN");
    await expectNotRouted("pi-unknown");
  });

  test("an id the token may not register is refused", async () => {
    const agent = new Agent(gateway, { id: "kitchen", to: service.port });
    expect(await agent.proc.exited(15_000)).toBe(1);
    expect(agent.proc.output.text).toContain("ID_NOT_ALLOWED");
    await expectNotRouted("kitchen");
  });

  test("a stale timestamp is refused", async () => {
    const tenMinutesAgo = BigInt(Date.now() - 10 * 60_000);
    expect(await rawConnect({ agentId: "pi-stale", timestampMs: tenMinutesAgo })).toEqual({
      code: Code.STALE_TIMESTAMP,
      connected: false,
    });
    await expectNotRouted("pi-stale");
  });

  test("a replayed nonce is refused", async () => {
    const nonce = newNonce();
    const timestampMs = BigInt(Date.now());
    expect((await rawConnect({ agentId: "pi-replay", nonce, timestampMs })).connected).toBe(true);
    expect(await rawConnect({ agentId: "pi-replay", nonce, timestampMs })).toEqual({
      code: Code.REPLAYED_NONCE,
      connected: false,
    });
  });

  test("an agent speaking another protocol version is told to upgrade", async () => {
    expect(await rawConnect({ agentId: "pi-old", protocolVersion: PROTOCOL_VERSION + 1 })).toEqual({
      code: Code.INCOMPATIBLE_VERSION,
      connected: false,
    });
  });

  test("an id held by one token cannot be taken by another", async () => {
    const first = await openRaw({ agentId: "pi-held" });
    expect((await first.answer).connected).toBe(true);
    try {
      const second = await rawConnect({
        agentId: "pi-held",
        token: "tok-other",
        secret: "another-secret-another-secret",
      });
      expect(second).toEqual({ code: Code.ID_HELD_BY_OTHER_TOKEN, connected: false });
    } finally {
      first.ws.close();
    }
  });

  test("anything but a ConnectRequest before authentication closes the connection", async () => {
    const ws = new WebSocket(gateway.wsUrl);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve) => {
      ws.onopen = resolve;
    });
    const answer = new Promise<Code | undefined>((resolve) => {
      ws.onmessage = (event) => {
        const message = decodeEnvelope(new Uint8Array(event.data as ArrayBuffer));
        resolve(message.case === "connectError" ? message.value.code : undefined);
      };
    });
    const closed = new Promise((resolve) => {
      ws.onclose = resolve;
    });
    ws.send(encodeEnvelope({ case: "control", value: { kind: { case: "ping", value: { seq: 1 } } } }));
    expect(await answer).toBe(Code.PROTOCOL_ERROR);
    await closed;
  });
});
