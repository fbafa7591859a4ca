// Agents of an older protocol version keep working against a newer gateway: the gateway speaks
// the lower version on that connection, so a version-1 agent never sees a batch or a merged window
// update, however many streams share a turn.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../shared/auth.ts";
import { BATCH_MARKER } from "../shared/batch.ts";
import { encodeRequest } from "../shared/codec.ts";
import { ConnectError_Code } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope, encodeEnvelope } from "../shared/protocol.ts";
import { Agent, eventually, Gateway } from "./harness.ts";
import { RogueAgent } from "./rogue.ts";
import { startEchoService } from "./services.ts";

let gateway: Gateway;

beforeAll(async () => {
  gateway = await Gateway.start();
});

afterAll(async () => {
  await gateway.stop();
});

/** Answers every request that arrives with its own path as the body, until stopped. */
function serveEcho(agent: RogueAgent): () => void {
  let serving = true;
  void (async () => {
    while (serving) {
      const request = await agent.nextRequest(60_000).catch(() => null);
      if (request === null) continue;
      agent.answer(request.streamId, 200, request.path);
    }
  })();
  return () => {
    serving = false;
  };
}

describe(`an agent of protocol version ${MIN_PROTOCOL_VERSION}`, () => {
  test("is served at its own version: one Envelope per message, one window update per stream", async () => {
    expect(MIN_PROTOCOL_VERSION).toBeLessThan(PROTOCOL_VERSION);
    const agent = await RogueAgent.connect(gateway.wsUrl, "pi-v1", MIN_PROTOCOL_VERSION);
    expect(agent.connected.protocolVersion).toBe(MIN_PROTOCOL_VERSION);
    const stop = serveEcho(agent);
    try {
      // Forty requests at once: a version-2 agent would get them in a few batches.
      const bodies = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => (await gateway.fetch("pi-v1", `/n/${i}`)).text()),
      );
      expect(bodies).toEqual(Array.from({ length: 40 }, (_, i) => `/n/${i}`));
    } finally {
      stop();
    }
    expect(agent.messages.length).toBeGreaterThanOrEqual(40);
    expect(agent.messages.filter((m) => m[0] === BATCH_MARKER)).toHaveLength(0);
    agent.close();
  });

  test("gets credit for a streamed response as single window updates", async () => {
    const agent = await RogueAgent.connect(gateway.wsUrl, "pi-v1-body", MIN_PROTOCOL_VERSION);
    const response = gateway.fetch("pi-v1-body", "/big");
    const request = await agent.nextRequest();
    const chunk = new Uint8Array(64 * 1024).fill(0x61);
    agent.send({ case: "response", value: { streamId: request.streamId, status: 200, endStream: false } });
    // One window's worth: the gateway must return credit for it before more could follow.
    for (let i = 0; i < 4; i++) {
      agent.send({ case: "data", value: { streamId: request.streamId, payload: chunk, endStream: i === 3 } });
    }
    const res = await response;
    expect((await res.arrayBuffer()).byteLength).toBe(4 * chunk.byteLength);
    const kinds = agent.controls.map((kind) => kind.case);
    expect(kinds).toContain("windowUpdate");
    expect(kinds).not.toContain("windowUpdates");
    expect(agent.messages.filter((m) => m[0] === BATCH_MARKER)).toHaveLength(0);
    agent.close();
  });
});

/**
 * A gateway that speaks only protocol version 1, as one not upgraded yet: it refuses any other
 * version the way such a gateway does, and sends one request to an agent it accepts.
 */
function startVersionOneGateway() {
  const offered: number[] = [];
  const answers: Uint8Array[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      return srv.upgrade(req) ? undefined : new Response("agents only", { status: 426 });
    },
    websocket: {
      message(ws: ServerWebSocket<unknown>, raw) {
        const bytes = new Uint8Array(raw as Buffer);
        const message = bytes[0] === BATCH_MARKER ? null : decodeEnvelope(bytes);
        if (message?.case !== "connect") return void answers.push(bytes);
        const version = message.value.protocolVersion;
        offered.push(version);
        if (version !== 1) {
          const text = `agent speaks protocol version ${version}, this gateway speaks version 1: upgrade the gateway`;
          ws.send(
            encodeEnvelope({
              case: "connectError",
              value: { code: ConnectError_Code.INCOMPATIBLE_VERSION, message: text },
            }),
          );
          return ws.close(1008, "incompatible version");
        }
        const connected = {
          sessionId: "v1",
          url: "http://pi-old.tunnel.test/",
          heartbeatIntervalMs: 15_000,
          initialWindow: 256 * 1024,
          maxFramePayload: 64 * 1024,
        };
        ws.send(
          encodeEnvelope({ case: "control", value: { kind: { case: "connected", value: connected } } }),
        );
        for (const streamId of [1, 3, 5]) {
          ws.send(
            encodeRequest({
              streamId,
              requestId: `r${streamId}`,
              method: "GET",
              path: `/status/20${streamId}`,
              headers: [{ name: "host", value: "pi-old.tunnel.test" }],
              endStream: true,
              window: 256 * 1024,
            }),
          );
        }
      },
    },
  });
  return { server, offered, answers };
}

describe("this agent against a gateway of protocol version 1", () => {
  test("is refused at its own version, dials again at version 1 and serves, one Envelope per message", async () => {
    const echo = startEchoService();
    const old = startVersionOneGateway();
    const agent = new Agent(`ws://127.0.0.1:${old.server.port}`, { id: "pi-old", to: echo.port });
    try {
      await agent.ready();
      expect(old.offered).toEqual([PROTOCOL_VERSION, MIN_PROTOCOL_VERSION]);
      expect(agent.proc.output.text).toContain(`speaking protocol version ${MIN_PROTOCOL_VERSION}`);
      await eventually(async () => {
        const statuses = old.answers
          .map((bytes) => decodeEnvelope(bytes))
          .flatMap((m) => (m.case === "response" ? [m.value.status] : []));
        expect(statuses.sort()).toEqual([201, 203, 205]);
      });
      expect(old.answers.filter((m) => m[0] === BATCH_MARKER)).toHaveLength(0);
    } finally {
      await agent.stop();
      old.server.stop(true);
      echo.stop(true);
    }
  }, 30_000);
});
