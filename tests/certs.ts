// Throwaway TLS material made with openssl at test time: a private CA and a server certificate
// it signed for localhost and 127.0.0.1.
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
}

function openssl(args: string[], cwd: string): void {
  const run = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (run.exitCode !== 0) {
    throw new Error(`openssl ${args[0]} failed (run scripts/install-test-deps.sh): ${run.stderr.toString()}`);
  }
}

export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "indranet-certs-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=indraNet test CA",
    ],
    dir,
  );
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir);
  // Private keys are kept from other users, as an operator would; the gateway warns otherwise.
  chmodSync(join(dir, "server.key"), 0o600);
  const ext = "subjectAltName=DNS:localhost,DNS:*.tunnel.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
  writeFileSync(join(dir, "server.ext"), ext);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "server.ext",
    ],
    dir,
  );
  return {
    dir,
    caCert: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server.key"),
  };
}
