import {
  agentIdAllowed,
  isValidAgentId,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  ReplayGuard,
  randomHex,
  verifyConnectSignature,
} from "../shared/auth.ts";
import { ConnectError_Code, type ConnectRequest } from "../shared/gen/tunnel_pb.ts";

/** One credential from the gateway config; `agents` are the ids (or `*` patterns) it may register. */
export interface TokenEntry {
  token: string;
  secret: string;
  agents: string[];
}

export type AuthResult =
  | { ok: true; entry: TokenEntry }
  | { ok: false; code: ConnectError_Code; message: string };

// Unknown tokens are still checked against this key so that the reply takes as long as for a known
// token: otherwise response timing would tell an attacker which tokens exist.
const DUMMY_SECRET = randomHex(32);

// Long enough to recognise the id in a log, short enough that a hostile id cannot bloat the reply.
const MAX_ECHOED_ID = 80;

/** Decides whether one ConnectRequest may register, against the configured tokens. */
export class Authenticator {
  #tokens = new Map<string, TokenEntry>();
  readonly #replay: ReplayGuard;

  constructor(tokens: TokenEntry[], opts: { skewMs?: number } = {}) {
    this.#replay = new ReplayGuard(opts.skewMs);
    this.setTokens(tokens);
  }

  /** Replaces the token table on reload; the replay guard stays, so a reload opens no replay window. */
  setTokens(tokens: TokenEntry[]): void {
    this.#tokens = new Map(tokens.map((entry) => [entry.token, entry]));
  }

  authenticate(req: ConnectRequest, nowMs: number): AuthResult {
    if (req.protocolVersion < MIN_PROTOCOL_VERSION || req.protocolVersion > PROTOCOL_VERSION) {
      return refuseVersion(req.protocolVersion);
    }
    if (!isValidAgentId(req.agentId)) {
      return refuse(
        ConnectError_Code.INVALID_ID,
        `agent id ${echoId(req.agentId)} is not a DNS label: use 1-63 characters of a-z, 0-9 and "-", ` +
          `not starting or ending with "-"`,
      );
    }
    const entry = this.#tokens.get(req.token);
    if (!entry) {
      verifyConnectSignature(DUMMY_SECRET, req, req.signature);
      return refuse(
        ConnectError_Code.UNKNOWN_TOKEN,
        "token is not known to this gateway: check the agent's token",
      );
    }
    if (!verifyConnectSignature(entry.secret, req, req.signature)) {
      return refuse(
        ConnectError_Code.BAD_SIGNATURE,
        "signature does not match: the agent's secret differs from the one the gateway holds for this token",
      );
    }
    const replay = this.#replay.check(req.token, req.nonce, req.timestampMs, nowMs);
    if (replay === "stale") return this.#refuseStale(req.timestampMs, nowMs);
    if (replay === "replayed") {
      return refuse(ConnectError_Code.REPLAYED_NONCE, "nonce was already used: connect request replayed");
    }
    if (!agentIdAllowed(entry.agents, req.agentId)) {
      return refuse(
        ConnectError_Code.ID_NOT_ALLOWED,
        `agent id ${echoId(req.agentId)} is not allowed for this token`,
      );
    }
    return { ok: true, entry };
  }

  #refuseStale(timestampMs: bigint, nowMs: number): AuthResult {
    const offsetMs = Number(timestampMs) - nowMs;
    const direction = offsetMs > 0 ? "ahead of" : "behind";
    return refuse(
      ConnectError_Code.STALE_TIMESTAMP,
      `agent clock is ${Math.abs(offsetMs)} ms ${direction} the gateway's (allowed: ${this.#replay.skewMs} ms): ` +
        "synchronise the clocks (NTP)",
    );
  }
}

function refuseVersion(agentVersion: number): AuthResult {
  const upgrade = agentVersion < PROTOCOL_VERSION ? "upgrade the agent" : "upgrade the gateway";
  return refuse(
    ConnectError_Code.INCOMPATIBLE_VERSION,
    `agent speaks protocol version ${agentVersion}, this gateway speaks versions ${MIN_PROTOCOL_VERSION} to ${PROTOCOL_VERSION}: ${upgrade}`,
  );
}

function refuse(code: ConnectError_Code, message: string): AuthResult {
  return { ok: false, code, message };
}

function echoId(id: string): string {
  return JSON.stringify(id.length > MAX_ECHOED_ID ? `${id.slice(0, MAX_ECHOED_ID)}…` : id);
}
