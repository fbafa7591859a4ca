// The `ssh -R` rows: an OpenSSH server on 127.0.0.1 (ephemeral port, keys generated in the bench's
// temp dir) and a client that forwards a port allocated by the server to the upstream; the TCP
// rows' `ssh -L`, a client that forwards a local port through the same server.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Children, freePort, run, waitForPort } from "./procs.ts";

const SSHD = "/usr/sbin/sshd";

export interface SshServer {
  port: number;
  dir: string;
  userKey: string;
  knownHosts: string;
}

async function keygen(file: string): Promise<void> {
  const result = await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", file]);
  if (result.code !== 0) throw new Error(`ssh-keygen failed: ${result.stderr}`);
}

export async function startSshd(children: Children, parent: string): Promise<SshServer> {
  const dir = join(parent, "ssh");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = join(dir, "host_ed25519");
  const userKey = join(dir, "user_ed25519");
  await Promise.all([keygen(hostKey), keygen(userKey)]);
  const authorizedKeys = join(dir, "authorized_keys");
  writeFileSync(authorizedKeys, readFileSync(`${userKey}.pub`), { mode: 0o600 });
  // sshd refuses to start without its privilege-separation directory (normally made by systemd).
  if (!existsSync("/run/sshd")) {
    mkdirSync("/run/sshd", { recursive: true });
    chmodSync("/run/sshd", 0o755);
  }
  const port = freePort();
  const config = join(dir, "sshd_config");
  writeFileSync(
    config,
    [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      // The key and the files live in a temp dir whose owner checks mean nothing here.
      "StrictModes no",
      "AllowTcpForwarding yes",
      "GatewayPorts no",
      "PrintMotd no",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  const knownHosts = join(dir, "known_hosts");
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${readFileSync(`${hostKey}.pub`, "utf8")}`);
  const child = children.spawn("sshd", [SSHD, "-D", "-e", "-f", config]);
  await waitForPort(port, child);
  return { port, dir, userKey, knownHosts };
}

/**
 * Starts `ssh -R` forwarding a server-allocated port to `targetPort` and returns that port.
 * `interactive` asks for a terminal (`-tt`, running `sleep`): OpenSSH sets TCP_NODELAY only on
 * interactive sessions, so `-N` shows what Nagle costs and `-tt` what is left without it.
 */
export async function startReverseTunnel(
  children: Children,
  server: SshServer,
  targetPort: number,
  interactive: boolean,
): Promise<number> {
  const session = interactive ? ["-tt", "127.0.0.1", "exec sleep 100000"] : ["-N", "127.0.0.1"];
  const child = children.spawn(
    interactive ? "ssh -tt -R" : "ssh -N -R",
    [...sshClient(server), "-R", `127.0.0.1:0:127.0.0.1:${targetPort}`, ...session],
    // With -tt ssh reads its stdin as the terminal: keep it open so the session stays up.
    { keepStdinOpen: interactive },
  );
  const [, port] = await child.waitFor(/Allocated port (\d+) for remote forward/);
  await waitForPort(Number(port), child);
  return Number(port);
}

/** Starts `ssh -N -L` forwarding a free local port to `targetPort` through the server; returns it. */
export async function startLocalForward(
  children: Children,
  server: SshServer,
  targetPort: number,
): Promise<number> {
  const port = freePort();
  const child = children.spawn("ssh -N -L", [
    ...sshClient(server),
    "-L",
    `127.0.0.1:${port}:127.0.0.1:${targetPort}`,
    "-N",
    "127.0.0.1",
  ]);
  await waitForPort(port, child);
  return port;
}

/** The client's command up to its forwarding: no user config, the bench's key and known host. */
function sshClient(server: SshServer): string[] {
  return [
    "ssh",
    "-F",
    "/dev/null",
    "-p",
    String(server.port),
    "-i",
    server.userKey,
    "-o",
    `UserKnownHostsFile=${server.knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ExitOnForwardFailure=yes",
  ];
}
