// Certificates from a real ACME CA: Debian's pebble on loopback, validating HTTP-01 for real by
// fetching each challenge from the gateway's --acme-http-port. Names are under `.localhost`, which
// curl, Bun and the agent resolve to loopback by themselves, so every URL is the one a user types.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Pebble, startPebble } from "./acme-services.ts";
import { freePort } from "./cluster-services.ts";
import {
  Agent,
  adminUrl,
  DEFAULT_TOKEN,
  fromDist,
  fromSource,
  Gateway,
  type Launcher,
  scrape,
} from "./harness.ts";
import { startEchoService } from "./services.ts";

const DOMAIN = "tunnel.localhost";
/** A fixed name ([acme] names) that pebble refuses by policy. */
const REFUSED = "refused.localhost";

const service = startEchoService();

afterAll(() => {
  service.stop(true);
});

/** Runs a command to its end without blocking this process (pebble validates against it). */
async function run(cmd: string[]): Promise<{ code: number; out: string; err: string }> {
  const child = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, out, err };
}

/** curl that trusts only pebble's root: it verifies the chain and the name, as a browser would. */
function curl(pebble: Pebble, url: string, ...extra: string[]) {
  return run(["curl", "-sS", "--max-time", "10", "--cacert", pebble.rootCaFile, ...extra, url]);
}

/** The serial and names of the certificate served to a client asking for `name` (SNI). */
async function servedCertificate(port: number, name: string): Promise<string> {
  const script = `openssl s_client -connect 127.0.0.1:${port} -servername ${name} </dev/null 2>/dev/null | openssl x509 -noout -serial -ext subjectAltName 2>&1`;
  return (await run(["sh", "-c", script])).out;
}

function acmeToml(pebble: Pebble): string {
  return `
[acme]
email = "ops@example.org"
directory = "${pebble.directoryUrl}"
ca_file = "${pebble.apiCaFile}"
names = ["${REFUSED}"]
`;
}

async function startAcmeGateway(
  pebble: Pebble,
  stateDir: string,
  acmeHttpPort: number,
  launcher: Launcher = fromSource,
): Promise<Gateway> {
  return Gateway.start({
    launcher,
    domain: DOMAIN,
    tokens: [{ ...DEFAULT_TOKEN, agents: ["*"] }],
    toml: acmeToml(pebble),
    args: ["--state-dir", stateDir, "--acme-http-port", String(acmeHttpPort), "--admin", "127.0.0.1:0"],
  });
}

/** An agent dialling the gateway by its name, trusting pebble's root for it. */
async function startAgent(gateway: Gateway, pebble: Pebble, id: string): Promise<Agent> {
  const agent = new Agent(`wss://${DOMAIN}:${gateway.wsPort}`, {
    id,
    to: service.port,
    args: ["--ca", pebble.rootCaFile],
  });
  await agent.ready();
  return agent;
}

/** Waits until the gateway logged `name`'s certificate and new connections are served it. */
async function issued(gateway: Gateway, name: string): Promise<void> {
  await gateway.proc.waitFor(new RegExp(`certificate for ${name.replaceAll(".", "\\.")} issued`), 20_000);
  await servedFor(gateway, name);
}

async function servedFor(gateway: Gateway, name: string): Promise<string> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const served = await servedCertificate(gateway.httpPort, name);
    if (served.includes(`DNS:${name}`)) return served;
    if (Date.now() > deadline) throw new Error(`${name}: its certificate is not served: ${served}`);
    await Bun.sleep(50);
  }
}

describe("ACME certificates", () => {
  let dir: string;
  let pebble: Pebble;
  let acmeHttpPort: number;
  let stateDir: string;
  let gateway: Gateway;
  const agents: Agent[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "indranet-acme-"));
    stateDir = join(dir, "state");
    acmeHttpPort = await freePort();
    pebble = await startPebble({ httpPort: acmeHttpPort, dir, domainBlocklist: [REFUSED] });
    gateway = await startAcmeGateway(pebble, stateDir, acmeHttpPort);
    // The gateway's own name first: agents dial it.
    await issued(gateway, DOMAIN);
  }, 30_000);

  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.stop()));
    await gateway?.stop();
    await pebble?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an agent's host gets a certificate when the agent connects, and curl reaches its service", async () => {
    expect(gateway.proc.output.text).not.toContain(`certificate for alpha.${DOMAIN}`);
    agents.push(await startAgent(gateway, pebble, "alpha"));
    await issued(gateway, `alpha.${DOMAIN}`);
    const { code, out, err } = await curl(pebble, `https://alpha.${DOMAIN}:${gateway.httpPort}/hello?x=1`);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ path: "/hello", query: "?x=1" });
    // The CA validated the name by fetching its challenge from the plain-HTTP port.
    expect(pebble.logs()).toMatch(/authz \S+ set VALID by completed challenge \S+/);
  }, 30_000);

  test("two agents get two certificates, each served for its own name", async () => {
    agents.push(await startAgent(gateway, pebble, "beta"));
    await issued(gateway, `beta.${DOMAIN}`);
    const alpha = await servedCertificate(gateway.httpPort, `alpha.${DOMAIN}`);
    const beta = await servedCertificate(gateway.httpPort, `beta.${DOMAIN}`);
    expect(alpha).toContain(`DNS:alpha.${DOMAIN}`);
    expect(alpha).not.toContain("beta");
    expect(beta).toContain(`DNS:beta.${DOMAIN}`);
    expect(beta).not.toContain("alpha");
    for (const id of ["alpha", "beta"]) {
      const { code, out } = await curl(pebble, `https://${id}.${DOMAIN}:${gateway.httpPort}/${id}`);
      expect(code).toBe(0);
      expect(JSON.parse(out).path).toBe(`/${id}`);
    }
  }, 30_000);

  test("plain HTTP redirects to https, keeping the path and query", async () => {
    const { out } = await run([
      "curl",
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{redirect_url}",
      `http://alpha.${DOMAIN}:${acmeHttpPort}/a/b?c=d`,
    ]);
    expect(out).toBe(`308 https://alpha.${DOMAIN}:${gateway.httpPort}/a/b?c=d`);
  });

  test("a name the CA refuses is logged with its reason and gets no other host's certificate", async () => {
    const [line] = await gateway.proc.waitFor(/no certificate for refused\.localhost[^\n]*/, 20_000);
    expect(line).toContain("forbidden by policy");
    expect(line).toContain("not served over TLS meanwhile");
    // The handshake fails instead of showing alpha's or beta's certificate.
    const handshake = await run([
      "sh",
      "-c",
      `openssl s_client -connect 127.0.0.1:${gateway.httpPort} -servername ${REFUSED} </dev/null 2>&1`,
    ]);
    expect(handshake.out).toContain("alert internal error");
    expect(handshake.out).not.toContain("BEGIN CERTIFICATE");
    const { code } = await curl(pebble, `https://${REFUSED}:${gateway.httpPort}/`);
    expect(code).not.toBe(0);
    const metrics = await scrape(await adminUrl(gateway.proc));
    expect(metrics.get(`indranet_acme_failures_total{name="${REFUSED}"}`)).toBeGreaterThanOrEqual(1);
    const expiry = metrics.get(`indranet_tls_certificate_expiry_timestamp_seconds{name="alpha.${DOMAIN}"}`);
    expect(expiry).toBeGreaterThan(Date.now() / 1000);
  }, 30_000);

  test("the account and certificates are kept in --state-dir, readable by the owner only", () => {
    const folder = join(stateDir, "acme");
    const files = [...new Bun.Glob("**/*.{key,crt}").scanSync({ cwd: folder })];
    expect(files).toContain(`${pebbleFolder(pebble)}/certificates/alpha.${DOMAIN}.crt`);
    expect(files).toContain(`${pebbleFolder(pebble)}/account.key`);
    for (const file of files) expect(statSync(join(folder, file)).mode & 0o077).toBe(0);
  });

  test("a restarted gateway serves the certificates from --state-dir without ordering again", async () => {
    const before = await servedCertificate(gateway.httpPort, `alpha.${DOMAIN}`);
    await Promise.all(agents.splice(0).map((agent) => agent.stop()));
    await gateway.stop();
    gateway = await startAcmeGateway(pebble, stateDir, acmeHttpPort);
    await gateway.proc.waitFor(/certificate\(s\) loaded from/);
    agents.push(await startAgent(gateway, pebble, "alpha"));
    const { code } = await curl(pebble, `https://alpha.${DOMAIN}:${gateway.httpPort}/`);
    expect(code).toBe(0);
    expect(await servedCertificate(gateway.httpPort, `alpha.${DOMAIN}`)).toBe(before);
    // Only the name the CA refuses is asked for again.
    expect(gateway.proc.output.text).not.toMatch(/ordering the certificate for [^\n]*tunnel\.localhost/);
    expect(gateway.proc.output.text).not.toContain("account key created");
  }, 30_000);
});

describe("ACME renewal", () => {
  test("a short-lived certificate is renewed under a running download, and kept when the CA is down", async () => {
    const dir = mkdtempSync(join(tmpdir(), "indranet-acme-renew-"));
    const acmeHttpPort = await freePort();
    // Renewal starts when a third of a certificate's life is left: 10 s after issue here.
    const pebble = await startPebble({ httpPort: acmeHttpPort, dir, validitySeconds: 15 });
    // The compiled binary, as users run it: acme-client and its crypto bundled in.
    const binary = fromDist(process.arch === "arm64" ? "arm64" : "x64");
    const gateway = await startAcmeGateway(pebble, join(dir, "state"), acmeHttpPort, binary);
    let agent: Agent | undefined;
    try {
      await issued(gateway, DOMAIN);
      agent = await startAgent(gateway, pebble, "alpha");
      await issued(gateway, `alpha.${DOMAIN}`);
      const first = await servedCertificate(gateway.httpPort, `alpha.${DOMAIN}`);
      // 130 chunks 100 ms apart: the download outlives the renewal.
      const download = curl(
        pebble,
        `https://alpha.${DOMAIN}:${gateway.httpPort}/drip/130`,
        ...["--max-time", "40", "-o", "/dev/null", "-w", "%{size_download}"],
      );
      await gateway.proc.waitFor(/renewing the certificate for alpha\./, 20_000);
      await gateway.proc.waitFor(
        /certificate for alpha\.[^\n]* issued[^\n]*\n(.|\n)*certificate for alpha\.[^\n]* issued/,
        20_000,
      );
      // New connections get the renewed certificate, with no restart.
      const renewed = await eventuallyDifferent(
        () => servedCertificate(gateway.httpPort, `alpha.${DOMAIN}`),
        first,
      );
      expect(renewed).not.toBe(first);
      expect(renewed).toContain(`DNS:alpha.${DOMAIN}`);
      const finished = await download;
      expect(finished.err).toBe("");
      expect(finished.code).toBe(0);
      expect(Number(finished.out)).toBe(130 * 1024);
      // The CA goes away: the next renewal fails, is logged, and the current certificate stays.
      await pebble.stop();
      const [line] = await gateway.proc.waitFor(/no certificate for alpha\.[^\n]*/, 20_000);
      expect(line).toContain("its current certificate is served meanwhile");
      const { code } = await curl(pebble, `https://alpha.${DOMAIN}:${gateway.httpPort}/`);
      expect(code).toBe(0);
    } finally {
      await agent?.stop();
      await gateway.stop();
      await pebble.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

async function eventuallyDifferent(read: () => Promise<string>, from: string): Promise<string> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const now = await read();
    if (now !== from || Date.now() > deadline) return now;
    await Bun.sleep(100);
  }
}

/** The state dir's folder for pebble's directory URL, as the gateway names it. */
function pebbleFolder(pebble: Pebble): string {
  const url = new URL(pebble.directoryUrl);
  return `${url.host}${url.pathname}`.replace(/[^a-zA-Z0-9.-]+/g, "-").replace(/-+$/, "");
}
