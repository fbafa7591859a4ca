import { describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { Counter } from "../../shared/metrics.ts";
import { makeTestCerts } from "../../tests/certs.ts";
import { CertificateSet } from "../certificates.ts";
import type { TlsPair } from "../tls.ts";
import { CertificateManager, NEW_NAMES_PER_HOUR, ORDERS_AT_ONCE, renewalTime } from "./manager.ts";
import type { AcmeStore } from "./store.ts";

const DAY = 86_400_000;

describe("renewal time", () => {
  test("30 days before expiry for a 90-day certificate", () => {
    expect(renewalTime({ notBefore: 0, notAfter: 90 * DAY })).toBe(60 * DAY);
  });

  test("when a third of a shorter life is left", () => {
    expect(renewalTime({ notBefore: 0, notAfter: 6 * DAY })).toBe(4 * DAY);
    expect(renewalTime({ notBefore: 1_000, notAfter: 16_000 })).toBe(11_000);
  });
});

// A real certificate (valid for two days), so that the manager can read its expiry.
const certs = makeTestCerts();
const issuedPair: TlsPair = {
  cert: readFileSync(certs.serverCert, "utf8"),
  key: readFileSync(certs.serverKey, "utf8"),
};
rmSync(certs.dir, { recursive: true, force: true });

/** An issuer whose orders stay open until the test settles them. */
class HeldIssuer {
  readonly orders: { name: string; settle: (ok: boolean) => void }[] = [];

  issue(name: string): Promise<TlsPair> {
    return new Promise((resolve, reject) => {
      this.orders.push({ name, settle: (ok) => (ok ? resolve(issuedPair) : reject(new Error("refused"))) });
    });
  }
}

function manager(issuer: { issue(name: string): Promise<TlsPair> }) {
  const written: string[] = [];
  const changed: string[] = [];
  const failures = new Counter("name");
  const store = {
    path: "/nowhere",
    readCertificates: () => new Map<string, TlsPair>(),
    writeCertificate: (name: string) => written.push(name),
  } as unknown as AcmeStore;
  const certificates = new CertificateSet(undefined, true);
  const subject = new CertificateManager({
    issuer,
    store,
    certificates,
    changed: (name) => changed.push(name),
    failures,
    inUse: () => true,
  });
  return { subject, written, changed, failures, certificates };
}

const settled = () => Bun.sleep(5);

describe("the certificate manager", () => {
  test(`runs ${ORDERS_AT_ONCE} orders at once; the next starts when one ends`, async () => {
    const issuer = new HeldIssuer();
    const { subject, certificates, changed } = manager(issuer);
    for (let i = 0; i < ORDERS_AT_ONCE + 2; i++) subject.want(`pi-${i}.tunnel.test`);
    expect(issuer.orders.length).toBe(ORDERS_AT_ONCE);
    issuer.orders[0]?.settle(true);
    await settled();
    expect(issuer.orders.length).toBe(ORDERS_AT_ONCE + 1);
    expect(certificates.has("pi-0.tunnel.test")).toBe(true);
    expect(changed).toEqual(["pi-0.tunnel.test"]);
    subject.stop();
  });

  test("a name wanted again while it is being ordered is not ordered twice", async () => {
    const issuer = new HeldIssuer();
    const { subject } = manager(issuer);
    subject.want("pi-a.tunnel.test");
    subject.want("pi-a.tunnel.test");
    subject.setFixed(["pi-a.tunnel.test"]);
    expect(issuer.orders.map((order) => order.name)).toEqual(["pi-a.tunnel.test"]);
    issuer.orders[0]?.settle(true);
    await settled();
    subject.want("pi-a.tunnel.test");
    expect(issuer.orders.length).toBe(1);
    subject.stop();
  });

  test("a refusal is counted and waits for its retry instead of ordering again at once", async () => {
    const issuer = new HeldIssuer();
    const { subject, failures, certificates } = manager(issuer);
    subject.want("pi-r.tunnel.test");
    issuer.orders[0]?.settle(false);
    await settled();
    expect(failures.get("pi-r.tunnel.test")).toBe(1);
    expect(certificates.has("pi-r.tunnel.test")).toBe(false);
    subject.want("pi-r.tunnel.test");
    subject.want("pi-other.tunnel.test");
    expect(issuer.orders.map((order) => order.name)).toEqual(["pi-r.tunnel.test", "pi-other.tunnel.test"]);
    subject.stop();
  });

  test("an order that ends after stop() changes nothing", async () => {
    const issuer = new HeldIssuer();
    const { subject, written, changed, certificates } = manager(issuer);
    subject.want("pi-s.tunnel.test");
    subject.stop();
    issuer.orders[0]?.settle(true);
    await settled();
    expect(written).toEqual([]);
    expect(changed).toEqual([]);
    expect(certificates.has("pi-s.tunnel.test")).toBe(false);
    subject.want("pi-t.tunnel.test");
    expect(issuer.orders.length).toBe(1);
  });

  test(`orders at most ${NEW_NAMES_PER_HOUR} new names an hour`, async () => {
    const issued: string[] = [];
    const { subject } = manager({
      issue: async (name) => {
        issued.push(name);
        return issuedPair;
      },
    });
    for (let i = 0; i < NEW_NAMES_PER_HOUR + 10; i++) subject.want(`pi-${i}.tunnel.test`);
    for (let i = 0; i < 20; i++) await settled();
    expect(issued.length).toBe(NEW_NAMES_PER_HOUR);
    subject.stop();
  });
});
