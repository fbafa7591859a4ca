// TLS on both gateway ports with a private CA made at test time: https for clients, wss for
// agents that trust the CA, and a clear permanent refusal by an agent that cannot verify it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { loadGatewayConfig } from "../gateway/config.ts";
import { UsageError } from "../shared/errors.ts";
import { makeTestCerts, type TestCerts } from "./certs.ts";
import { Agent, DOMAIN, eventually, Gateway } from "./harness.ts";
import { startEchoService } from "./services.ts";

let certs: TestCerts;
let gateway: Gateway;
const service = startEchoService();

beforeAll(async () => {
  certs = makeTestCerts();
  gateway = await Gateway.start({ args: ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey] });
});

afterAll(async () => {
  await gateway?.stop();
  service.stop(true);
  if (certs) rmSync(certs.dir, { recursive: true, force: true });
});

function httpsFetch(agentId: string, path: string): Promise<Response> {
  return fetch(`https://127.0.0.1:${gateway.httpPort}${path}`, {
    headers: { host: `${agentId}.${DOMAIN}:${gateway.httpPort}`, "x-forwarded-proto": "http" },
    tls: { ca: readFileSync(certs.caCert, "utf8") },
  });
}

describe("TLS", () => {
  test("the gateway announces https and wss", () => {
    expect(gateway.proc.output.text).toMatch(/ingress listening on https:\/\//);
    expect(gateway.proc.output.text).toMatch(/agents connect to wss:\/\//);
  });

  test("an agent trusting the CA connects over wss, and https requests reach its service", async () => {
    const agent = new Agent(`wss://localhost:${gateway.wsPort}`, {
      id: "pi-tls",
      to: service.port,
      args: ["--ca", certs.caCert],
    });
    try {
      await agent.ready();
      expect(agent.proc.output.text).toContain("https://pi-tls.");
      const res = await httpsFetch("pi-tls", "/hello");
      expect(res.status).toBe(200);
      const echo = (await res.json()) as { path: string; headers: [string, string][] };
      expect(echo.path).toBe("/hello");
      // The client's own claim is replaced: the gateway knows the connection was TLS.
      expect(echo.headers.filter(([name]) => name === "x-forwarded-proto")).toEqual([
        ["x-forwarded-proto", "https"],
      ]);
    } finally {
      await agent.stop();
    }
  });

  test("an agent that cannot verify the certificate exits non-zero and says why", async () => {
    const agent = new Agent(`wss://localhost:${gateway.wsPort}`, { id: "pi-untrusted", to: service.port });
    expect(await agent.proc.exited(15_000)).toBe(1);
    const output = agent.proc.output.text;
    expect(output).toContain("TLS certificate does not verify");
    expect(output).toContain("--ca");
    expect(output).not.toContain("tunnel ready");
  });

  test("plain http on the TLS ingress port gets no answer from the tunnel", async () => {
    // A connected agent, so that an ingress that also spoke plain HTTP would answer 200.
    const agent = new Agent(`wss://localhost:${gateway.wsPort}`, {
      id: "pi-tls-plain",
      to: service.port,
      args: ["--ca", certs.caCert],
    });
    try {
      await agent.ready();
      expect((await httpsFetch("pi-tls-plain", "/")).status).toBe(200);
      const attempt = await fetch(`http://127.0.0.1:${gateway.httpPort}/`, {
        headers: { host: `pi-tls-plain.${DOMAIN}` },
      }).then(
        (res) => `answered ${res.status}`,
        () => "no answer",
      );
      expect(attempt).toBe("no answer");
    } finally {
      await agent.stop();
    }
  });
});

describe("a renewed --tls-cert", () => {
  test("SIGHUP serves the new certificate to new connections while a download on the old one goes on", async () => {
    const first = makeTestCerts();
    const second = makeTestCerts();
    // The gateway reads the same two paths each time, as certbot's renewal leaves them.
    const certFile = join(first.dir, "live.pem");
    const keyFile = join(first.dir, "live.key");
    copyFileSync(first.serverCert, certFile);
    copyFileSync(first.serverKey, keyFile);
    const renewing = await Gateway.start({ args: ["--tls-cert", certFile, "--tls-key", keyFile] });
    const agent = new Agent(`wss://localhost:${renewing.wsPort}`, {
      id: "pi-renew",
      to: service.port,
      args: ["--ca", first.caCert],
    });
    const get = (path: string, ca: string) =>
      fetch(`https://127.0.0.1:${renewing.httpPort}${path}`, {
        headers: { host: `pi-renew.${DOMAIN}` },
        tls: { ca: readFileSync(ca, "utf8") },
        keepalive: false,
      });
    try {
      await agent.ready();
      // 40 chunks 100 ms apart: the download is still running when the certificate changes.
      const download = await get("/drip/40", first.caCert);
      expect(download.status).toBe(200);
      const body = download.arrayBuffer();
      copyFileSync(second.serverCert, certFile);
      copyFileSync(second.serverKey, keyFile);
      renewing.proc.child.kill("SIGHUP");
      await renewing.proc.waitFor(/the --tls-cert certificate changed/);
      // A new connection verifies only with the new certificate's CA.
      const renewed = await eventually(() => get("/hello", second.caCert));
      expect(((await renewed.json()) as { path: string }).path).toBe("/hello");
      // The old certificate is no longer served to a new connection.
      expect(
        await get("/hello", first.caCert).then(
          () => "verified",
          () => "refused",
        ),
      ).toBe("refused");
      expect((await body).byteLength).toBe(40 * 1024);
      // The agent's WebSocket, opened on the old certificate, still carries requests.
      expect((await get("/again", second.caCert)).status).toBe(200);
      expect(renewing.proc.output.text).not.toContain("agent pi-renew disconnected");
      expect(renewing.proc.output.text.match(/agent pi-renew connected/g)?.length).toBe(1);
    } finally {
      await agent.stop();
      await renewing.stop();
      rmSync(first.dir, { recursive: true, force: true });
      rmSync(second.dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("TLS settings", () => {
  function usageError(flags: Record<string, string>, env: Record<string, string> = {}): string {
    try {
      loadGatewayConfig({ dev: true, ...flags }, env);
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      return (error as Error).message;
    }
    throw new Error("expected a UsageError");
  }

  test("a certificate without its key names the missing setting", () => {
    expect(usageError({ "tls-cert": certs.serverCert })).toBe(
      "--tls-cert is set but --tls-key (INDRANET_TLS_KEY, tls_key) is not: TLS needs both or neither",
    );
    expect(usageError({}, { INDRANET_TLS_KEY: certs.serverKey })).toContain(
      "INDRANET_TLS_KEY is set but --tls-cert",
    );
  });

  test("a key that is not the certificate's own is refused, naming both settings", () => {
    expect(usageError({ "tls-cert": certs.serverCert, "tls-key": join(certs.dir, "ca.key") })).toBe(
      "--tls-cert and --tls-key: the key does not belong to the certificate",
    );
  });

  test("an unreadable or wrong file is named", () => {
    expect(usageError({ "tls-cert": "/nonexistent.pem", "tls-key": certs.serverKey })).toBe(
      "--tls-cert: cannot read /nonexistent.pem: no such file",
    );
    expect(usageError({ "tls-cert": certs.serverKey, "tls-key": certs.serverKey })).toContain(
      "holds no PEM certificate",
    );
    expect(usageError({ "tls-cert": certs.serverCert, "tls-key": certs.serverCert })).toContain(
      "holds no PEM private key",
    );
  });

  test("both from the environment load, and a key readable by others is warned about", () => {
    const config = loadGatewayConfig(
      { dev: true },
      { INDRANET_TLS_CERT: certs.serverCert, INDRANET_TLS_KEY: certs.serverKey },
    );
    expect(config.tls?.cert).toContain("BEGIN CERTIFICATE");
    expect(config.warnings).toEqual([]);
    const exposedKey = join(certs.dir, "exposed.key");
    copyFileSync(certs.serverKey, exposedKey);
    chmodSync(exposedKey, 0o644);
    const exposed = loadGatewayConfig({ dev: true, "tls-cert": certs.serverCert, "tls-key": exposedKey }, {});
    expect(exposed.warnings.join("\n")).toContain("the TLS private key");
  });
});
