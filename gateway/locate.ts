// Where a request for an agent goes when this gateway holds no session for it: another gateway
// of the cluster, or nowhere yet (the request waits while the agent reconnects), or nowhere.
import type { ClusterDirectory, Location, Peer } from "./cluster/directory.ts";
import { type IngressError, ingressError } from "./errors.ts";
import type { HeldRequests } from "./hold.ts";
import type { AgentSession } from "./session.ts";
import type { SessionRegistry } from "./sessions.ts";

/** While a request is held in a cluster, how often the directory is asked again. */
const DIRECTORY_POLL_MS = 250;

export type Target =
  | { kind: "local"; session: AgentSession }
  | { kind: "peer"; peer: Peer }
  | { kind: "refused"; error: IngressError };

export class Locator {
  readonly #registry: SessionRegistry;
  readonly #holds: HeldRequests;
  readonly #directory: ClusterDirectory | undefined;

  constructor(registry: SessionRegistry, holds: HeldRequests, directory: ClusterDirectory | undefined) {
    this.#registry = registry;
    this.#holds = holds;
    this.#directory = directory;
  }

  /**
   * The target for a request for `agentId`: a local session, a peer, or a refusal once the hold
   * (if any) is over.
   */
  async locate(agentId: string, signal: AbortSignal): Promise<Target> {
    const session = this.#registry.pick(agentId);
    if (session) return { kind: "local", session };
    const directory = this.#directory;
    const now = Date.now();
    let location = await directory?.locate(agentId);
    if (location?.kind === "peers") return peerOf(location.peers);
    // Sessions that are all stopping: the agent is restarting, and is worth waiting for.
    const restarting = this.#registry.sessionsFor(agentId).length > 0;
    if (!restarting && !this.#holds.shouldHold(agentId, now, clusterHint(location))) {
      const code = location?.kind === "unavailable" ? "cluster_unavailable" : "agent_not_connected";
      return { kind: "refused", error: ingressError(code, agentId) };
    }
    if (this.#holds.full) return { kind: "refused", error: ingressError("too_many_held") };
    const deadline = now + this.#holds.holdMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        const code = location?.kind === "unavailable" ? "cluster_unavailable" : "agent_gone";
        return {
          kind: "refused",
          error: ingressError(code, `${agentId}, after ${this.#holds.holdMs / 1000} s`),
        };
      }
      const waited = await this.#holds.wait(
        agentId,
        directory ? Math.min(left, DIRECTORY_POLL_MS) : left,
        signal,
      );
      if (waited === "aborted") return { kind: "refused", error: ingressError("client_closed") };
      const arrived = this.#registry.pick(agentId);
      if (arrived) return { kind: "local", session: arrived };
      location = await directory?.locate(agentId);
      if (location?.kind === "peers") return peerOf(location.peers);
    }
  }
}

/** The cluster's word on an absent agent; none when the directory is not there to ask. */
function clusterHint(location: Location | undefined): { seenElsewhere: boolean } | undefined {
  if (location?.kind !== "absent") return undefined;
  return { seenElsewhere: location.recentlyLeft };
}

/** Several gateways may hold the agent (--connections): any of them will do. */
function peerOf(peers: Peer[]): Target {
  return { kind: "peer", peer: peers[Math.floor(Math.random() * peers.length)] as Peer };
}
