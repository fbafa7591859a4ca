// Every resource a peer can make the gateway hold has a bound, and each bound its answer
// (docs/SECURITY.md lists them). These prove the ones a client or an agent reaches first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_SESSIONS_PER_ID, MAX_UNAUTHENTICATED } from "../gateway/agent-listener.ts";
import { ConnectError_Code } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope } from "../shared/protocol.ts";
import { Agent, DOMAIN, Gateway } from "./harness.ts";
import { connectFrame, openSocket, RogueAgent } from "./rogue.ts";
import { startWebSocketService } from "./services.ts";

const service = startWebSocketService();
let gateway: Gateway;

beforeAll(async () => {
  gateway = await Gateway.start({ args: ["--max-streams", "2"] });
});

afterAll(async () => {
  await gateway?.stop();
  service.stop();
});

/** The ConnectError the gateway answers on `ws`, or null if it closes without one. */
function connectError(ws: WebSocket): Promise<ConnectError_Code | null> {
  return new Promise((resolve) => {
    ws.addEventListener("message", (event) => {
      const message = decodeEnvelope(new Uint8Array(event.data as ArrayBuffer));
      resolve(message.case === "connectError" ? message.value.code : null);
    });
    ws.addEventListener("close", () => resolve(null));
  });
}

function clientSocket(agentId: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.httpPort}/echo`, {
    headers: { host: `${agentId}.${DOMAIN}:${gateway.httpPort}` },
    perMessageDeflate: false,
  } as Bun.WebSocketOptions);
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("the WebSocket through the tunnel did not open"));
  });
}

describe("limits", () => {
  test("WebSocket streams count against --max-streams", async () => {
    const agent = await Agent.start(gateway, { id: "pi-ws-limit", to: service.port });
    try {
      const sockets = [await clientSocket("pi-ws-limit"), await clientSocket("pi-ws-limit")];
      const refused = await gateway.fetch("pi-ws-limit", "/");
      expect(refused.status).toBe(503);
      expect(refused.headers.get("x-tunnel-error")).toBe("too_many_streams");
      expect(refused.headers.get("retry-after")).toBe("1");
      await expect(clientSocket("pi-ws-limit")).rejects.toThrow();
      const closed = new Promise((resolve) => {
        (sockets[0] as WebSocket).onclose = resolve;
      });
      sockets[0]?.close();
      await closed;
      // One stream freed: the next upgrade goes through again.
      const again = await clientSocket("pi-ws-limit");
      again.close();
      sockets[1]?.close();
    } finally {
      await agent.stop();
    }
  }, 30_000);

  test(`an agent id holds at most ${MAX_SESSIONS_PER_ID} sessions; the next is refused TOO_MANY_SESSIONS`, async () => {
    const held: RogueAgent[] = [];
    try {
      for (let i = 0; i < MAX_SESSIONS_PER_ID; i++)
        held.push(await RogueAgent.connect(gateway.wsUrl, "pi-many"));
      const ws = await openSocket(gateway.wsUrl);
      const answer = connectError(ws);
      ws.send(connectFrame("pi-many"));
      expect(await answer).toBe(ConnectError_Code.TOO_MANY_SESSIONS);
      // One leaves: there is room again.
      const left = held.pop() as RogueAgent;
      left.close();
      await left.closed;
      await gateway.proc.waitFor(/agent pi-many disconnected/);
      held.push(await RogueAgent.connect(gateway.wsUrl, "pi-many"));
      expect(held.every((agent) => agent.open)).toBe(true);
    } finally {
      for (const agent of held) agent.close();
    }
  }, 30_000);

  test(`past ${MAX_UNAUTHENTICATED} unauthenticated sockets the oldest is refused, and an agent still gets in`, async () => {
    const sockets: WebSocket[] = [];
    try {
      for (let i = 0; i < MAX_UNAUTHENTICATED; i++) sockets.push(await openSocket(gateway.wsUrl));
      const oldest = connectError(sockets[0] as WebSocket);
      sockets.push(await openSocket(gateway.wsUrl));
      expect(await oldest).toBe(ConnectError_Code.RATE_LIMITED);
      // A real agent dialling now evicts another idle socket and authenticates.
      const agent = await RogueAgent.connect(gateway.wsUrl, "pi-flooded");
      expect(agent.open).toBe(true);
      agent.close();
    } finally {
      for (const ws of sockets) ws.close();
    }
  }, 60_000);
});
