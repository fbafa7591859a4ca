// Reconnect delays: exponential with jitter, so a fleet of agents that lost the same gateway
// does not return in one synchronized wave.

/** First retry comes quickly: most drops are a gateway restart that is back within a second. */
const BASE_DELAY_MS = 500;

/** Cap from DESIGN §5: an agent is never more than ~30 s from its next attempt. */
export const MAX_DELAY_MS = 30_000;

/** Delay before attempt `failures` (0 after a session that served): half fixed, half random. */
export function backoffDelay(failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(failures, 16));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}
