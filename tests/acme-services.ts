// A real ACME CA for tests: Debian's pebble on free loopback ports, with pebble-challtestsrv as its
// DNS server answering 127.0.0.1 for every name, so HTTP-01 validation reaches a server under test
// on 127.0.0.1:<httpPort>. Pebble's own HTTPS listener uses a throwaway certificate from certs.ts.

import { createSocket } from "node:dgram";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { makeTestCerts } from "./certs.ts";
import { freePort } from "./cluster-services.ts";

export interface PebbleOptions {
  /** The port pebble's validation authority connects to on 127.0.0.1 for HTTP-01 challenges. */
  httpPort: number;
  /** Where the config, the root certificate and the logs are written. */
  dir: string;
  /** The lifetime of issued certificates in seconds (pebble config certificateValidityPeriod). */
  validitySeconds?: number;
  /**
   * Names pebble refuses to issue for (`rejectedIdentifier`), e.g. to test a refusal. Pebble 2.4
   * panics on an order for a name with fewer labels than an entry here, so keep entries short.
   */
  domainBlocklist?: string[];
}

export interface Pebble {
  /** The ACME directory, https://127.0.0.1:<port>/dir. */
  directoryUrl: string;
  /** PEM file of the CA that signs pebble's own HTTPS listener (the ACME client must trust it). */
  apiCaFile: string;
  /** PEM file of pebble's issuing root (what curl --cacert needs to verify issued certs). */
  rootCaFile: string;
  /** Pebble's stdout and stderr, for a failing test to show; challtestsrv's are beside it. */
  logFile: string;
  /** The text of both processes' logs so far. */
  logs(): string;
  stop(): Promise<void>;
}

// Runs a command so that it dies with the test run: the wrapper's stdin is a pipe from this process,
// and when it closes (stop(), or this process exiting or crashing) the wrapper kills the command.
// (A background list's stdin is /dev/null in sh, hence the copy on descriptor 3.)
const WATCHDOG = `
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
{ cat >/dev/null; kill "$child" 2>/dev/null; } <&3 &
exec 3<&-
trap 'kill "$child" 2>/dev/null' TERM
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
exit "$status"
`;

class Daemon {
  readonly #child: Subprocess<"pipe", number, number>;
  readonly logFile: string;

  constructor(cmd: string[], logFile: string, env: Record<string, string> = {}) {
    this.logFile = logFile;
    const fd = openSync(logFile, "a");
    try {
      this.#child = Bun.spawn(["sh", "-c", WATCHDOG, "watchdog", ...cmd], {
        env: { ...process.env, ...env },
        stdin: "pipe",
        stdout: fd,
        stderr: fd,
      });
    } finally {
      closeSync(fd);
    }
  }

  get exited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  log(): string {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    void this.#child.stdin.end();
    if (this.exited) return;
    // Closing stdin makes the wrapper kill the command; SIGKILL the wrapper if that takes too long.
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 5_000);
    await this.#child.exited;
    clearTimeout(timer);
  }
}

/** A port free right now on 127.0.0.1 for both TCP and UDP, for a DNS server. */
async function freeDnsPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const udpFree = await new Promise<boolean>((resolve) => {
      const socket = createSocket("udp4");
      socket.once("error", () => resolve(false));
      socket.bind(port, "127.0.0.1", () => socket.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

/** Starts pebble and its DNS server; resolves once the directory answers and the root is saved. */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const { dir } = options;
  const certs = makeTestCerts();
  const [acmePort, managementPort, tlsPort, dnsPort, dnsManagementPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freeDnsPort(),
    freePort(),
  ]);
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: certs.serverCert,
      privateKey: certs.serverKey,
      httpPort: options.httpPort,
      // Nothing listens there: tests use HTTP-01 only.
      tlsPort,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
      ...(options.domainBlocklist ? { domainBlocklist: options.domainBlocklist } : {}),
      ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
    },
  };
  const configFile = join(dir, "pebble-config.json");
  writeFileSync(configFile, JSON.stringify(config, null, 2));

  // Every A query is answered 127.0.0.1 and AAAA queries get no address, so validation never tries
  // ::1; the challenge listeners are turned off so they take no ports.
  const dns = new Daemon(
    [
      "pebble-challtestsrv",
      "-dns01",
      `127.0.0.1:${dnsPort}`,
      "-defaultIPv4",
      "127.0.0.1",
      "-defaultIPv6",
      "",
      "-http01",
      "",
      "-https01",
      "",
      "-tlsalpn01",
      "",
      "-management",
      `127.0.0.1:${dnsManagementPort}`,
    ],
    join(dir, "challtestsrv.log"),
  );
  const pebble = new Daemon(
    ["pebble", "-config", configFile, "-dnsserver", `127.0.0.1:${dnsPort}`],
    join(dir, "pebble.log"),
    {
      // No random 0-15 s sleep before each validation.
      PEBBLE_VA_NOSLEEP: "1",
      // No valid nonce randomly rejected as badNonce (5% by default).
      PEBBLE_WFE_NONCEREJECT: "0",
      // Every order gets fresh authorizations, so every issuance really validates (50% reuse by default).
      PEBBLE_AUTHZREUSE: "0",
    },
  );
  const logs = () => `--- pebble ---\n${pebble.log()}\n--- pebble-challtestsrv ---\n${dns.log()}`;
  const stop = async () => {
    await Promise.all([pebble.stop(), dns.stop()]);
  };

  const ca = readFileSync(certs.caCert, "utf8");
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  const rootCaFile = join(dir, "pebble-root.pem");
  try {
    await waitUntil(`pebble-challtestsrv on ${dnsManagementPort}`, [dns], async () => {
      await fetch(`http://127.0.0.1:${dnsManagementPort}/`);
    });
    await waitUntil(`pebble directory ${directoryUrl}`, [pebble, dns], async () => {
      const res = await fetch(directoryUrl, { tls: { ca } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      await res.json();
    });
    const res = await fetch(`https://127.0.0.1:${managementPort}/roots/0`, { tls: { ca } });
    if (!res.ok) throw new Error(`pebble's /roots/0 answered HTTP ${res.status}`);
    writeFileSync(rootCaFile, await res.text());
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${logs()}`);
  }
  return { directoryUrl, apiCaFile: certs.caCert, rootCaFile, logFile: pebble.logFile, logs, stop };
}

async function waitUntil(what: string, daemons: Daemon[], check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (daemons.some((d) => d.exited)) throw new Error(`${what}: a process exited during startup`);
      if (Date.now() > deadline) throw new Error(`${what} not ready within 15 s: ${error}`);
      await Bun.sleep(50);
    }
  }
}
