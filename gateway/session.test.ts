import { expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { PROTOCOL_VERSION } from "../shared/auth.ts";
import { forEachFrame } from "../shared/batch.ts";
import { TunnelClose_Reason } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope, encodeData, encodeEnvelope, INITIAL_WINDOW } from "../shared/protocol.ts";
import { AgentSession } from "./session.ts";

/** A WebSocket that keeps what the session sends and says whether it was closed. */
function fakeSocket() {
  const sent: ReturnType<typeof decodeEnvelope>[] = [];
  let closed = false;
  const ws = {
    send(message: Uint8Array) {
      forEachFrame(message, (frame) => sent.push(decodeEnvelope(frame)));
      return message.byteLength;
    },
    cork(writes: () => void) {
      writes();
    },
    close() {
      closed = true;
    },
  } as unknown as ServerWebSocket<unknown>;
  return { ws, sent, closed: () => closed };
}

const STREAM = {
  sendWindow: INITIAL_WINDOW,
  receiveWindow: INITIAL_WINDOW,
  headTimeoutMs: 10_000,
  idleTimeoutMs: 0,
};

function responseHead(streamId: number): Uint8Array {
  return encodeEnvelope({
    case: "response",
    value: { streamId, status: 200, headers: [], body: new Uint8Array(0) },
  });
}

test("a stream whose handler throws costs that stream only, not the session", async () => {
  const socket = fakeSocket();
  const session = new AgentSession(
    socket.ws,
    { agentId: "pi-x", token: "t", remoteAddress: "127.0.0.1", agentVersion: "test", tcpServices: [] },
    PROTOCOL_VERSION,
    () => {},
  );
  const broken = session.openStream({ ...STREAM, requestId: "req-broken" });
  const healthy = session.openStream({ ...STREAM, requestId: "req-healthy" });
  broken.onResponse = () => {
    throw new TypeError("boom");
  };
  session.receive(responseHead(broken.streamId));
  session.receive(responseHead(healthy.streamId));
  session.receive(encodeData(healthy.streamId, new TextEncoder().encode("still here"), true));

  const failed = await broken.response;
  expect(failed.status).toBe(500);
  expect(failed.headers.get("x-tunnel-error")).toBe("gateway_error");
  session.flush();
  const close = socket.sent.find((m) => m.case === "close");
  expect(close?.case === "close" && close.value.streamId).toBe(broken.streamId);
  expect(close?.case === "close" && close.value.reason).toBe(TunnelClose_Reason.PROTOCOL_ERROR);

  expect(socket.closed()).toBe(false);
  expect(session.closed).toBe(false);
  expect(await (await healthy.response).text()).toBe("still here");
});
