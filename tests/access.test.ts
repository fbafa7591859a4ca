// Per-agent access rules at the gateway: basic auth, address lists, rate limits. A refused request
// never reaches the device.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Agent, adminUrl, eventually, Gateway, scrape } from "./harness.ts";
import { type EchoService, startEchoService } from "./services.ts";

// Cheap parameters: the tests prove the rules, not argon2's cost.
const HASH = await Bun.password.hash("open sesame", { algorithm: "argon2id", memoryCost: 256, timeCost: 1 });

const TABLES = `
[agents."pi-auth"]
basic_auth = ["alice:${HASH}"]

[agents."pi-deny"]
deny = ["127.0.0.0/8", "::1"]

[agents."pi-allow"]
allow = ["127.0.0.1", "::1"]

[agents."pi-elsewhere"]
allow = ["10.0.0.0/8", "2001:db8::/32"]

[agents."pi-proxied"]
deny = ["198.51.100.0/24"]

[agents."pi-rate"]
rate_limit = "1/s"
rate_burst = 2
`;

const IDS = ["pi-auth", "pi-deny", "pi-allow", "pi-elsewhere", "pi-proxied", "pi-rate"];

let service: EchoService;
const running: { stop(): Promise<void> }[] = [];

async function startPair(bind: string): Promise<Gateway> {
  const gateway = await Gateway.start({
    bind,
    toml: TABLES,
    args: ["--trust-proxy", "127.0.0.1", "--admin", "127.0.0.1:0"],
  });
  running.push(gateway);
  for (const id of IDS) running.unshift(await Agent.start(gateway, { id, to: service.port }));
  return gateway;
}

let v4: Gateway;
let v6: Gateway;

beforeAll(async () => {
  service = startEchoService();
  // The machine has ::1 (checked before writing these tests); the gateways bind both loopbacks.
  [v4, v6] = await Promise.all([startPair("127.0.0.1"), startPair("::1")]);
}, 60_000);

afterAll(async () => {
  for (const proc of running) await proc.stop();
  service.stop(true);
});

type Echo = { headers: [string, string][] };
const basic = (user: string, password: string) => `Basic ${btoa(`${user}:${password}`)}`;

describe("basic auth", () => {
  test("401 with the agent's realm without the right credentials", async () => {
    for (const authorization of [undefined, basic("alice", "wrong"), basic("mallory", "open sesame")]) {
      const res = await v4.fetch("pi-auth", "/", authorization ? { headers: { authorization } } : {});
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Basic realm="pi-auth"');
      expect(res.headers.get("x-tunnel-error")).toBe("unauthorized");
    }
  });

  test("200 with them, and the device never sees the Authorization header", async () => {
    for (let i = 0; i < 2; i++) {
      const res = await v4.fetch("pi-auth", "/", {
        headers: { authorization: basic("alice", "open sesame") },
      });
      expect(res.status).toBe(200);
      const { headers } = (await res.json()) as Echo;
      expect(headers.map(([name]) => name)).not.toContain("authorization");
    }
  });

  test("refusals are counted by reason and logged", async () => {
    const samples = await scrape(await adminUrl(v4.proc));
    expect(samples.get('indranet_access_refused_total{reason="unauthorized"}')).toBeGreaterThanOrEqual(3);
    await v4.proc.waitFor(/- pi-auth GET \/ 401 /);
  });
});

describe("address lists", () => {
  for (const [family, gateway] of [
    ["127.0.0.1", () => v4],
    ["::1", () => v6],
  ] as const) {
    test(`from ${family}: denied, allowed, or not in the allow list`, async () => {
      const denied = await gateway().fetch("pi-deny", "/");
      expect(denied.status).toBe(403);
      expect(denied.headers.get("x-tunnel-error")).toBe("forbidden");
      expect((await gateway().fetch("pi-allow", "/")).status).toBe(200);
      expect((await gateway().fetch("pi-elsewhere", "/")).status).toBe(403);
    });
  }

  test("behind a trusted proxy, the client is judged by X-Forwarded-For", async () => {
    const from = (address: string) =>
      v4.fetch("pi-proxied", "/", { headers: { "x-forwarded-for": address } });
    expect((await from("198.51.100.7")).status).toBe(403);
    expect((await from("198.51.100.7, 203.0.113.1")).status).toBe(200);
    // ::1 is not a trusted proxy of the other gateway: its client's header proves nothing.
    const direct = await v6.fetch("pi-proxied", "/", { headers: { "x-forwarded-for": "198.51.100.7" } });
    expect(direct.status).toBe(200);
  });
});

describe("rate limit", () => {
  test("429 with Retry-After past the burst, then requests pass again", async () => {
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 3; i++) {
      const res = await v4.fetch("pi-rate", "/");
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(statuses).toContain(429);
    expect(limited?.headers.get("x-tunnel-error")).toBe("rate_limited");
    expect(Number(limited?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    await eventually(async () => expect((await v4.fetch("pi-rate", "/")).status).toBe(200), 5_000);
  });
});
