// Which address a request's access is judged by. Behind trusted front proxies the socket is the
// proxy's, so the client is the right-most X-Forwarded-For entry no trusted proxy wrote: entries
// to its left were written by the client itself and prove nothing.
import type { CidrList } from "./cidr.ts";

export function clientAddress(socketAddress: string, forwardedFor: string | null, trusted: CidrList): string {
  if (forwardedFor === null || !trusted.has(socketAddress)) return socketAddress;
  const entries = forwardedFor.split(",");
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = (entries[i] as string).trim();
    if (entry !== "" && !trusted.has(entry)) return entry;
  }
  // Proxies all the way: the first of them stands for the client.
  return entries[0]?.trim() || socketAddress;
}
