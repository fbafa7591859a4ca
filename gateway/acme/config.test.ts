import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { usageError } from "../../shared/usage-error.testing.ts";
import { loadGatewayConfig } from "../config.ts";
import { configFiles, TOKEN } from "../config-files.testing.ts";
import { LETS_ENCRYPT } from "./config.ts";

const { dir, file } = configFiles("indranet-acme-config-");
const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

const load = (flags: Record<string, string | boolean>, env: Record<string, string> = {}) =>
  loadGatewayConfig({ bind: "127.0.0.1", domain: "tunnel.example.org", ...flags }, env);

describe("[acme] settings", () => {
  test("none without an email: no certificates are ordered, the ingress stays on 8082", () => {
    const config = load({ dev: true });
    expect(config.acme).toBeUndefined();
    expect(config.httpPort).toBe(8082);
  });

  test("--acme-email alone: Let's Encrypt, HTTPS on 443, challenges on 80, state in /var/lib/indranet", () => {
    const config = load({ dev: true, "acme-email": "ops@example.org" });
    expect(config.acme).toEqual({ email: "ops@example.org", directory: LETS_ENCRYPT, names: [] });
    expect(config.httpPort).toBe(443);
    expect(config.acmeHttpPort).toBe(80);
    expect(config.stateDir).toBe("/var/lib/indranet");
  });

  test("the file's table: staging by name, a private CA next to the file, fixed names, a relative state dir", () => {
    writeFileSync(join(dir, "ca.pem"), CA);
    const path = file(
      `state_dir = "state"\nacme_http_port = 8088\nhttp_port = 8443\n${TOKEN}[acme]\nemail = "ops@example.org"\ndirectory = "letsencrypt-staging"\nca_file = "ca.pem"\nnames = ["Gateway.Example.org."]\n`,
    );
    const config = load({ config: path });
    expect(config.acme).toEqual({
      email: "ops@example.org",
      directory: "https://acme-staging-v02.api.letsencrypt.org/directory",
      ca: CA,
      names: ["gateway.example.org"],
    });
    expect(config.stateDir).toBe(join(dir, "state"));
    expect(config.acmeHttpPort).toBe(8088);
    // A port given anywhere wins over 443.
    expect(config.httpPort).toBe(8443);
  });

  test("every mistake names its setting", () => {
    expect(usageError(() => load({ config: file(`${TOKEN}[acme]\ndirectory = "letsencrypt"\n`) }))).toContain(
      "acme: email is required",
    );
    expect(usageError(() => load({ dev: true, "acme-email": "ops" }))).toBe(
      "--acme-email: 'ops' is not an email address",
    );
    expect(
      usageError(() => load({ dev: true, "acme-email": "ops@example.org", domain: "localhost" })),
    ).toContain("--domain is 'localhost'");
    const table = (body: string) =>
      usageError(() => load({ config: file(`${TOKEN}[acme]\nemail = "a@b.org"\n${body}`) }));
    expect(table(`directory = "http://ca.example/dir"`)).toContain(
      "acme.directory: expected the CA's https://",
    );
    expect(table(`names = ["*.example.org"]`)).toContain("needs a DNS-01 challenge");
    expect(table(`names = ["not a name"]`)).toContain("is not a DNS name");
    expect(table(`ca_file = "missing.pem"`)).toContain("acme.ca_file: cannot read");
    expect(table(`renew = 3`)).toContain("unknown key 'renew'");
    expect(
      usageError(() => load({ dev: true, "acme-email": "a@b.org", "acme-http-port": "http" })),
    ).toContain("--acme-http-port");
  });

  test("the challenge port may not be another listener's", () => {
    expect(usageError(() => load({ dev: true, "acme-email": "a@b.org", "acme-http-port": "8080" }))).toBe(
      "--ws-port and --acme-http-port are both 8080: each listener needs a port of its own",
    );
  });

  test("not with a cluster: certificates are not shared between gateways yet", () => {
    expect(
      usageError(() =>
        load(
          { dev: true, "acme-email": "a@b.org", "cluster-redis": "redis://127.0.0.1:6379" },
          { INDRANET_CLUSTER_SECRET: "cluster-secret-0123456789" },
        ),
      ),
    ).toContain("[acme] cannot be used with [cluster]");
  });
});
