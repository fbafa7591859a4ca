// Requests held across an agent's reconnect: a request for an agent that was connected moments
// ago waits for it to come back instead of failing, so a brief reconnect, or one caused by a
// gateway restart, is invisible to clients. An id never seen still fails at once.
import type { RegistryObserver } from "./sessions.ts";

/** Held requests at once, across all agents; more are refused (503) rather than queued. */
export const MAX_HELD = 10_000;

export type WaitResult = "woken" | "timeout" | "aborted";

export class HeldRequests implements RegistryObserver {
  readonly holdMs: number;
  readonly #startedAt: number;
  readonly #allowed: (agentId: string) => boolean;
  /** When each id lost its last session; pruned once older than the hold. */
  readonly #left = new Map<string, number>();
  readonly #waiters = new Map<string, Set<() => void>>();
  #held = 0;

  /**
   * @param allowed whether some token may register the id: during the first `holdMs` after
   *   start the gateway has not seen its agents yet, so it holds requests for any such id.
   */
  constructor(holdMs: number, allowed: (agentId: string) => boolean, now = Date.now()) {
    this.holdMs = holdMs;
    this.#startedAt = now;
    this.#allowed = allowed;
  }

  get held(): number {
    return this.#held;
  }

  get full(): boolean {
    return this.#held >= MAX_HELD;
  }

  /**
   * Whether a request for `agentId`, which has no session now, should wait for one. `cluster` is
   * the directory's answer when it gave one (the id left some gateway moments ago, or not): it
   * replaces the start-up guess.
   */
  shouldHold(agentId: string, now: number, cluster?: { seenElsewhere: boolean }): boolean {
    // An id no token allows any more (revoked on reload) has no agent to wait for.
    if (this.holdMs === 0 || !this.#allowed(agentId)) return false;
    const left = this.#left.get(agentId);
    if (left !== undefined && now - left < this.holdMs) return true;
    if (cluster) return cluster.seenElsewhere;
    return now - this.#startedAt < this.holdMs;
  }

  /**
   * Waits until a session for `agentId` arrives here, `ms` passes, or `signal` aborts. The
   * caller looks again in every case: a wake-up is a hint, not a promise of a session.
   */
  wait(agentId: string, ms: number, signal: AbortSignal): Promise<WaitResult> {
    if (signal.aborted) return Promise.resolve("aborted");
    this.#held++;
    return new Promise((resolve) => {
      const finish = (result: WaitResult) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        const set = this.#waiters.get(agentId);
        set?.delete(wake);
        if (set?.size === 0) this.#waiters.delete(agentId);
        this.#held--;
        resolve(result);
      };
      const wake = () => finish("woken");
      const onAbort = () => finish("aborted");
      const timer = setTimeout(() => finish("timeout"), ms);
      signal.addEventListener("abort", onAbort, { once: true });
      const set = this.#waiters.get(agentId) ?? new Set();
      set.add(wake);
      this.#waiters.set(agentId, set);
    });
  }

  arrived(agentId: string): void {
    this.#left.delete(agentId);
    const set = this.#waiters.get(agentId);
    if (set) for (const wake of [...set]) wake();
  }

  left(agentId: string, now = Date.now()): void {
    this.#left.set(agentId, now);
  }

  /** Drops the memory of agents gone for longer than the hold, so the map stays bounded by churn. */
  prune(now: number): void {
    for (const [agentId, at] of this.#left) if (now - at >= this.holdMs) this.#left.delete(agentId);
  }
}
