// Agents of an older protocol version keep working against a newer gateway: the gateway speaks
// the lower version on that connection, so a version-1 agent never sees a batch or a merged window
// update, however many streams share a turn.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../shared/auth.ts";
import { BATCH_MARKER } from "../shared/batch.ts";
import { Gateway } from "./harness.ts";
import { RogueAgent } from "./rogue.ts";

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
