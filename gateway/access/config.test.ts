import { describe, expect, test } from "bun:test";
import { usageError } from "../../shared/usage-error.testing.ts";
import { loadGatewayConfig } from "../config.ts";
import { configFiles } from "../config-file.testing.ts";

const HASH = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
const configFile = configFiles();
const load = (text: string) => loadGatewayConfig({ config: configFile(text) }, {});

describe("access rules in [agents] tables", () => {
  test("are read beside inspect, from exact ids and patterns", () => {
    const config = load(
      `[agents."pi-kitchen"]\ninspect = false\nbasic_auth = ["alice:${HASH}"]\nallow = ["203.0.113.0/24", "::1"]\n` +
        `[agents."pi-*"]\ndeny = ["10.0.0.0/8"]\nrate_limit = "20/s"\n` +
        `[agents."pi-hall"]\nrate_limit = "600/m"\nrate_burst = 40\n` +
        `[agents."pi-quiet"]\ninspect = false\n`,
    );
    expect(config.inspectOff).toEqual(["pi-kitchen", "pi-quiet"]);
    expect(config.access).toEqual([
      {
        pattern: "pi-kitchen",
        users: [{ user: "alice", hash: HASH }],
        allow: ["203.0.113.0/24", "::1"],
        deny: [],
      },
      { pattern: "pi-*", users: [], allow: [], deny: ["10.0.0.0/8"], rate: { perSecond: 20, burst: 20 } },
      { pattern: "pi-hall", users: [], allow: [], deny: [], rate: { perSecond: 10, burst: 40 } },
    ]);
  });

  test("a slow rate bursts at least one request", () => {
    expect(load(`[agents."pi-a"]\nrate_limit = "1/m"\n`).access[0]?.rate).toEqual({
      perSecond: 1 / 60,
      burst: 1,
    });
  });

  test("each mistake names the file, the table and the key", () => {
    const cases: [string, string][] = [
      [`basic_auth = "alice"`, `agents."pi-a".basic_auth must be an array of strings`],
      [`basic_auth = [1]`, `agents."pi-a".basic_auth[0] must be a string`],
      [
        `basic_auth = ["alice:secret"]`,
        `agents."pi-a".basic_auth[0] must be "user:hash" with a hash from gateway-tunnel hash-password ($argon2id$… or $2b$…)`,
      ],
      [
        `basic_auth = [":${HASH}"]`,
        `agents."pi-a".basic_auth[0] must be "user:hash" with a hash from gateway-tunnel hash-password ($argon2id$… or $2b$…)`,
      ],
      [
        `allow = ["10.0.0.0/8", "10.0.0.0/33"]`,
        `agents."pi-a".allow[1] '10.0.0.0/33' is not an IP address or CIDR range`,
      ],
      [`deny = ["example.org"]`, `agents."pi-a".deny[0] 'example.org' is not an IP address or CIDR range`],
      [
        `rate_limit = "20/h"`,
        `agents."pi-a".rate_limit must be requests per second or minute, such as "20/s" or "600/m"`,
      ],
      [
        `rate_limit = 20`,
        `agents."pi-a".rate_limit must be requests per second or minute, such as "20/s" or "600/m"`,
      ],
      [
        `rate_limit = "0/s"`,
        `agents."pi-a".rate_limit must be requests per second or minute, such as "20/s" or "600/m"`,
      ],
      [`rate_limit = "2/s"\nrate_burst = 0`, `agents."pi-a".rate_burst must be a whole number of at least 1`],
      [`rate_burst = 5`, `agents."pi-a".rate_burst needs rate_limit`],
      [
        `basic_auht = []`,
        `agents."pi-a": unknown key 'basic_auht' (known: inspect, basic_auth, allow, deny, rate_limit, rate_burst)`,
      ],
    ];
    for (const [text, message] of cases) {
      const path = configFile(`[agents."pi-a"]\n${text}\n`);
      expect(usageError(() => loadGatewayConfig({ config: path }, {}))).toBe(`${path}: ${message}`);
    }
    const path = configFile(`[agents."Pi A"]\ndeny = []\n`);
    expect(usageError(() => loadGatewayConfig({ config: path }, {}))).toBe(
      `${path}: agents."Pi A" is not an agent id or pattern (lowercase a-z, 0-9, '-' and '*')`,
    );
  });

  test("trusted proxies take CIDR ranges too, and name a bad one", () => {
    expect(
      loadGatewayConfig({ config: configFile(""), "trust-proxy": "10.0.0.0/8,::1" }, {}).trustedProxies,
    ).toEqual(["10.0.0.0/8", "::1"]);
    expect(
      usageError(() => loadGatewayConfig({ config: configFile(""), "trust-proxy": "10.0.0.0/40" }, {})),
    ).toBe("--trust-proxy: '10.0.0.0/40' is not an IP address or CIDR range");
    const path = configFile('trusted_proxies = ["10.0.0.1", "proxy"]\n');
    expect(usageError(() => loadGatewayConfig({ config: path }, {}))).toBe(
      `${path}: trusted_proxies: 'proxy' is not an IP address or CIDR range`,
    );
  });
});
