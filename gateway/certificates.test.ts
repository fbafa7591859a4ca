import { describe, expect, test } from "bun:test";
import { CertificateSet } from "./certificates.ts";

const pair = (name: string) => ({ cert: `cert of ${name}`, key: `key of ${name}` });

describe("the certificate set", () => {
  test("without a --tls-cert pair, the first entry holds no certificate, so unknown names fail the handshake", () => {
    const set = new CertificateSet(undefined);
    expect(set.set("a.example.org", pair("a"))).toBe(true);
    const [first, ...named] = set.tls();
    expect(first).toEqual({ serverName: "no-certificate.invalid" });
    expect(named).toEqual([{ serverName: "a.example.org", ...pair("a") }]);
  });

  test("the --tls-cert pair answers every other name; a renewal replaces a name's entry", () => {
    const set = new CertificateSet(pair("fallback"));
    set.set("a.example.org", pair("a"));
    expect(set.set("a.example.org", pair("a"))).toBe(false);
    expect(set.set("a.example.org", pair("a2"))).toBe(true);
    expect(set.tls()).toEqual([pair("fallback"), { serverName: "a.example.org", ...pair("a2") }]);
    expect(set.setFallback(pair("fallback"))).toBe(false);
    expect(set.setFallback(pair("renewed"))).toBe(true);
  });
});
