import { describe, expect, test } from "bun:test";
import type { IngressErrorCode } from "../errors.ts";
import { CidrList } from "./cidr.ts";
import type { AccessRule } from "./config.ts";
import { AccessControl } from "./policy.ts";

// Cheap parameters: the tests prove the rules, not argon2's cost.
const HASH = await Bun.password.hash("open sesame", { algorithm: "argon2id", memoryCost: 256, timeCost: 1 });

const rule = (pattern: string, fields: Partial<AccessRule> = {}): AccessRule => ({
  pattern,
  users: [],
  allow: [],
  deny: [],
  ...fields,
});

function control(rules: AccessRule[], proxies: string[] = []) {
  const refused: IngressErrorCode[] = [];
  const access = new AccessControl(rules, new CidrList(proxies), (code) => refused.push(code));
  const from = (address: string) => ({ requestIP: () => ({ address }) });
  const check = async (agentId: string, address: string, headers: Record<string, string> = {}) => {
    const req = new Request("http://x/", { headers });
    const refusal = await access.check(agentId, req, from(address));
    return { code: refusal?.code, refusal, req };
  };
  return { access, refused, check };
}

const basic = (user: string, password: string) => `Basic ${btoa(`${user}:${password}`)}`;

describe("which table applies to an agent", () => {
  const { access } = control([
    rule("pi-*", { deny: ["10.0.0.1"] }),
    rule("*", { deny: ["10.0.0.2"] }),
    rule("pi-kitchen-*", { deny: ["10.0.0.3"] }),
    rule("*-kitchen-*", { deny: ["10.0.0.4"] }),
    rule("pi-kitchen-2", { deny: ["10.0.0.5"] }),
  ]);

  test("the exact id first", () => {
    expect(access.policyFor("pi-kitchen-2")?.pattern).toBe("pi-kitchen-2");
  });

  test("then the pattern with the most characters besides *, the first in the file on a tie", () => {
    expect(access.policyFor("pi-kitchen-1")?.pattern).toBe("pi-kitchen-*");
    expect(access.policyFor("pi-hall")?.pattern).toBe("pi-*");
    expect(access.policyFor("zz-kitchen-1")?.pattern).toBe("*-kitchen-*");
    expect(access.policyFor("device")?.pattern).toBe("*");
  });

  test("no table, no restriction; a reload replaces the tables", () => {
    const { access } = control([rule("pi-*", { deny: ["10.0.0.1"] })]);
    expect(access.policyFor("device")).toBeUndefined();
    access.replace([rule("device", { deny: ["10.0.0.1"] })]);
    expect(access.policyFor("device")?.pattern).toBe("device");
    expect(access.policyFor("pi-hall")).toBeUndefined();
  });
});

describe("the checks", () => {
  test("deny first, then only the allowed addresses; 403 for the rest, counted", async () => {
    const { check, refused } = control([
      rule("pi-x", { allow: ["203.0.113.0/24", "2001:db8::/32"], deny: ["203.0.113.66"] }),
    ]);
    expect((await check("pi-x", "203.0.113.5")).code).toBeUndefined();
    expect((await check("pi-x", "::ffff:203.0.113.5")).code).toBeUndefined();
    expect((await check("pi-x", "2001:db8::7")).code).toBeUndefined();
    expect((await check("pi-x", "203.0.113.66")).code).toBe("forbidden");
    const outside = await check("pi-x", "198.51.100.1");
    expect(outside.code).toBe("forbidden");
    expect(outside.refusal?.toResponse().status).toBe(403);
    expect(refused).toEqual(["forbidden", "forbidden"]);
  });

  test("an address that does not parse never passes a list, a deny list alone included", async () => {
    const { check } = control([rule("pi-x", { deny: ["198.51.100.0/24"] })]);
    expect((await check("pi-x", "203.0.113.5")).code).toBeUndefined();
    expect((await check("pi-x", "203.0.113.5:4711")).code).toBe("forbidden");
  });

  test("behind a trusted proxy, the client in X-Forwarded-For is judged", async () => {
    const { check } = control([rule("pi-x", { deny: ["198.51.100.1"] })], ["10.0.0.0/8"]);
    expect((await check("pi-x", "10.0.0.1", { "x-forwarded-for": "198.51.100.1" })).code).toBe("forbidden");
    expect((await check("pi-x", "10.0.0.1", { "x-forwarded-for": "198.51.100.2" })).code).toBeUndefined();
    // From anyone else, the header is the client's own word.
    expect((await check("pi-x", "198.51.100.2", { "x-forwarded-for": "1.1.1.1" })).code).toBeUndefined();
    expect((await check("pi-x", "198.51.100.1", { "x-forwarded-for": "1.1.1.1" })).code).toBe("forbidden");
  });

  test("rate: 429 with Retry-After past the burst, per client address and agent", async () => {
    const { check } = control([rule("pi-*", { rate: { perSecond: 1 / 60, burst: 2 } })]);
    expect((await check("pi-a", "203.0.113.1")).code).toBeUndefined();
    expect((await check("pi-a", "203.0.113.1")).code).toBeUndefined();
    const limited = await check("pi-a", "203.0.113.1");
    expect(limited.code).toBe("rate_limited");
    const response = limited.refusal?.toResponse();
    expect(response?.status).toBe(429);
    expect(Number(response?.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await check("pi-a", "203.0.113.2")).code).toBeUndefined();
    expect((await check("pi-b", "203.0.113.1")).code).toBeUndefined();
  });

  test("basic auth: 401 with the agent as realm, then the right password passes, without its header", async () => {
    const { check } = control([rule("pi-*", { users: [{ user: "alice", hash: HASH }] })]);
    const none = await check("pi-a", "203.0.113.1");
    expect(none.code).toBe("unauthorized");
    expect(none.refusal?.toResponse().headers.get("www-authenticate")).toBe('Basic realm="pi-a"');
    for (const header of [basic("alice", "wrong"), basic("bob", "open sesame"), "Bearer x", "Basic !!"]) {
      expect((await check("pi-a", "203.0.113.1", { authorization: header })).code).toBe("unauthorized");
    }
    const ok = await check("pi-a", "203.0.113.1", { authorization: basic("alice", "open sesame") });
    expect(ok.code).toBeUndefined();
    expect(ok.req.headers.get("authorization")).toBeNull();
    // An unknown user is checked against a hash with Bun's default cost: seconds on a busy machine.
  }, 30_000);

  test("a verified header is remembered: the next check settles without hashing", async () => {
    const { access } = control([rule("pi-*", { users: [{ user: "alice", hash: HASH }] })]);
    const from = { requestIP: () => ({ address: "203.0.113.1" }) };
    const req = () => new Request("http://x/", { headers: { authorization: basic("alice", "open sesame") } });
    const first = access.check("pi-a", req(), from);
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBeUndefined();
    expect(access.check("pi-a", req(), from)).toBeUndefined();
  });
});
