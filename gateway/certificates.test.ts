import { describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { makeTestCerts } from "../tests/certs.ts";
import { CertificateSet, pairProblem } from "./certificates.ts";

const pair = (name: string) => ({ cert: `cert of ${name}`, key: `key of ${name}` });

describe("the certificate set", () => {
  test("without a --tls-cert pair, the first entry holds no certificate, so unknown names fail the handshake", () => {
    const set = new CertificateSet(undefined, true);
    expect(set.set("a.example.org", pair("a"))).toBe(true);
    const [first, ...named] = set.tls();
    expect(first).toEqual({ serverName: "no-certificate.invalid" });
    expect(named).toEqual([{ serverName: "a.example.org", ...pair("a") }]);
  });

  test("the --tls-cert pair answers every other name; a renewal replaces a name's entry", () => {
    const set = new CertificateSet(pair("fallback"), false);
    set.set("a.example.org", pair("a"));
    expect(set.set("a.example.org", pair("a"))).toBe(false);
    expect(set.set("a.example.org", pair("a2"))).toBe(true);
    expect(set.tls()).toEqual([pair("fallback"), { serverName: "a.example.org", ...pair("a2") }]);
    expect(set.setFallback(pair("fallback"))).toBe(false);
    expect(set.setFallback(pair("renewed"))).toBe(true);
  });
});

describe("the --tls-cert pair beside ACME", () => {
  const certs = makeTestCerts();
  const server = { cert: readFileSync(certs.serverCert, "utf8"), key: readFileSync(certs.serverKey, "utf8") };
  const caKey = readFileSync(`${certs.dir}/ca.key`, "utf8");
  rmSync(certs.dir, { recursive: true, force: true });

  test("is served only to the names it holds, after ACME's own, and never as the default", () => {
    const set = new CertificateSet(server, true);
    set.set("pi.tunnel.test", pair("pi"));
    const entries = set.tls();
    expect(entries[0]).toEqual({ serverName: "no-certificate.invalid" });
    expect(entries.map((entry) => entry.serverName)).toEqual([
      "no-certificate.invalid",
      "pi.tunnel.test",
      "localhost",
      "*.tunnel.test",
    ]);
  });

  test("a key that is not the certificate's own is named as such", () => {
    expect(pairProblem(server)).toBeUndefined();
    expect(pairProblem({ cert: server.cert, key: caKey })).toBe("the key does not belong to the certificate");
    expect(pairProblem(pair("junk"))).toContain("does not parse");
  });
});
