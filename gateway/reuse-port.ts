// SO_REUSEPORT lets a new gateway process listen on the ports of the one it replaces, so a restart
// never leaves a moment with nothing listening. Only for a port given explicitly: for port 0 Linux
// may choose a port another SO_REUSEPORT socket of the same user already listens on, and two
// unrelated processes would then share one "free" port.
export function sharesPort(port: number): boolean {
  return port !== 0;
}
