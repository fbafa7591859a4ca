import { describe, expect, test } from "bun:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { MIN_PROTOCOL_VERSION, newNonce, PROTOCOL_VERSION, signConnect } from "../shared/auth.ts";
import { ConnectError_Code, type ConnectRequest, ConnectRequestSchema } from "../shared/gen/tunnel_pb.ts";
import { Authenticator, type TokenEntry } from "./authenticate.ts";

const NOW = 1_700_000_000_000;
const HOME: TokenEntry = { token: "tok-home", secret: "home-secret-123", agents: ["pi-*", "nas"] };

function connect(
  overrides: MessageInitShape<typeof ConnectRequestSchema> = {},
  secret = HOME.secret,
): ConnectRequest {
  const req = create(ConnectRequestSchema, {
    agentId: "pi-kitchen",
    token: HOME.token,
    timestampMs: BigInt(NOW),
    nonce: newNonce(),
    protocolVersion: PROTOCOL_VERSION,
    agentVersion: "test",
    ...overrides,
  });
  req.signature = signConnect(secret, req);
  return req;
}

function refusal(auth: Authenticator, req: ConnectRequest, nowMs = NOW) {
  const result = auth.authenticate(req, nowMs);
  if (result.ok) throw new Error("expected a refusal");
  expect(result.message).not.toContain(HOME.secret);
  return result;
}

describe("authenticator", () => {
  test("accepts a well-signed request for an allowed id", () => {
    const result = new Authenticator([HOME]).authenticate(connect(), NOW);
    expect(result).toEqual({ ok: true, entry: HOME });
  });

  test("accepts an exact id from the token's list", () => {
    expect(new Authenticator([HOME]).authenticate(connect({ agentId: "nas" }), NOW).ok).toBe(true);
  });

  test("refuses an older agent and says to upgrade it", () => {
    const result = refusal(new Authenticator([HOME]), connect({ protocolVersion: 0 }));
    expect(result.code).toBe(ConnectError_Code.INCOMPATIBLE_VERSION);
    expect(result.message).toContain(`versions ${MIN_PROTOCOL_VERSION} to ${PROTOCOL_VERSION}`);
    expect(result.message).toContain("upgrade the agent");
  });

  test("accepts an agent of every version it still speaks", () => {
    for (let v = MIN_PROTOCOL_VERSION; v <= PROTOCOL_VERSION; v++) {
      expect(new Authenticator([HOME]).authenticate(connect({ protocolVersion: v }), NOW).ok).toBe(true);
    }
  });

  test("refuses a newer agent and says to upgrade the gateway", () => {
    const result = refusal(new Authenticator([HOME]), connect({ protocolVersion: PROTOCOL_VERSION + 1 }));
    expect(result.code).toBe(ConnectError_Code.INCOMPATIBLE_VERSION);
    expect(result.message).toContain("upgrade the gateway");
  });

  test("refuses an id that is not a DNS label", () => {
    const result = refusal(new Authenticator([HOME]), connect({ agentId: "Pi.Kitchen" }));
    expect(result.code).toBe(ConnectError_Code.INVALID_ID);
    expect(result.message).toContain("DNS label");
  });

  test("refuses an unknown token", () => {
    const result = refusal(new Authenticator([HOME]), connect({ token: "tok-nobody" }));
    expect(result.code).toBe(ConnectError_Code.UNKNOWN_TOKEN);
  });

  test("refuses a request signed with the wrong secret", () => {
    const result = refusal(new Authenticator([HOME]), connect({}, "wrong-secret"));
    expect(result.code).toBe(ConnectError_Code.BAD_SIGNATURE);
  });

  test("refuses a request whose fields were changed after signing", () => {
    const req = connect();
    req.agentId = "pi-garage";
    expect(refusal(new Authenticator([HOME]), req).code).toBe(ConnectError_Code.BAD_SIGNATURE);
  });

  test("refuses a stale timestamp and hints at clock sync", () => {
    const auth = new Authenticator([HOME], { skewMs: 1_000 });
    const behind = refusal(auth, connect({ timestampMs: BigInt(NOW - 5_000) }));
    expect(behind.code).toBe(ConnectError_Code.STALE_TIMESTAMP);
    expect(behind.message).toContain("5000 ms behind");
    expect(behind.message).toContain("NTP");
    const ahead = refusal(auth, connect({ timestampMs: BigInt(NOW + 5_000) }));
    expect(ahead.message).toContain("5000 ms ahead of");
  });

  test("refuses a replayed request", () => {
    const auth = new Authenticator([HOME]);
    const req = connect();
    expect(auth.authenticate(req, NOW).ok).toBe(true);
    expect(refusal(auth, req, NOW + 100).code).toBe(ConnectError_Code.REPLAYED_NONCE);
  });

  test("refuses an id the token may not register, naming the id", () => {
    const result = refusal(new Authenticator([HOME]), connect({ agentId: "camera-1" }));
    expect(result.code).toBe(ConnectError_Code.ID_NOT_ALLOWED);
    expect(result.message).toContain('"camera-1"');
  });

  test("picks up new and revoked tokens on reload", () => {
    const office: TokenEntry = { token: "tok-office", secret: "office-secret", agents: ["*"] };
    const auth = new Authenticator([HOME]);
    auth.setTokens([office]);
    expect(refusal(auth, connect()).code).toBe(ConnectError_Code.UNKNOWN_TOKEN);
    const req = connect({ token: office.token, agentId: "desk" }, office.secret);
    expect(auth.authenticate(req, NOW)).toEqual({ ok: true, entry: office });
  });

  test("still refuses a replay after a reload", () => {
    const auth = new Authenticator([HOME]);
    const req = connect();
    expect(auth.authenticate(req, NOW).ok).toBe(true);
    auth.setTokens([HOME]);
    expect(refusal(auth, req, NOW + 100).code).toBe(ConnectError_Code.REPLAYED_NONCE);
  });
});
