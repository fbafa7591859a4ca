import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { flagValues } from "../shared/cli.ts";
import { usageError } from "../shared/usage-error.testing.ts";
import { loadAgentConfig } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "indranet-agent-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = "0123456789abcdef-secret";
const BASE = { gateway: "ws://gw.example.com:8080", token: "tok-kitchen", id: "pi-kitchen" };
const ENV = { INDRANET_SECRET: SECRET };

function load(flags: Record<string, string>, env: Record<string, string> = ENV) {
  return loadAgentConfig({ ...BASE, ...flags }, env);
}

function secretFile(name: string, text: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

describe("agent config", () => {
  test("reads flags and fills in defaults", () => {
    expect(load({})).toEqual({
      gateways: ["ws://gw.example.com:8080"],
      connections: 1,
      token: "tok-kitchen",
      secret: SECRET,
      agentId: "pi-kitchen",
      to: { host: "127.0.0.1", port: 80 },
      tcp: [],
      logLevel: "info",
      logFormat: "text",
      shutdownGraceMs: 10_000,
      admin: "off",
      warnings: [],
    });
  });

  test("reads everything from INDRANET_* variables", () => {
    const config = loadAgentConfig(
      {},
      {
        INDRANET_GATEWAY: "wss://gw.example.com",
        INDRANET_TOKEN: "tok-env",
        INDRANET_SECRET: SECRET,
        INDRANET_AGENT_ID: "pi-env",
        INDRANET_TO: "3000",
        INDRANET_LOG_LEVEL: "debug",
        INDRANET_LOG_FORMAT: "json",
      },
    );
    expect(config).toMatchObject({
      gateways: ["wss://gw.example.com:8080"],
      token: "tok-env",
      agentId: "pi-env",
      to: { host: "127.0.0.1", port: 3000 },
      logLevel: "debug",
      logFormat: "json",
    });
  });

  test("a flag overrides its environment variable", () => {
    expect(load({ to: "4000" }, { ...ENV, INDRANET_TO: "3000" }).to.port).toBe(4000);
  });

  test("says which flag is required and which variable can replace it", () => {
    expect(usageError(() => loadAgentConfig({ gateway: BASE.gateway }, ENV))).toBe(
      "--token is required (or set INDRANET_TOKEN)",
    );
    expect(usageError(() => loadAgentConfig({}, ENV))).toBe(
      "--gateway is required (or set INDRANET_GATEWAY)",
    );
  });

  test("rejects an id that is not a DNS label", () => {
    for (const id of ["Pi", "pi_kitchen", "-pi", "pi-", "a".repeat(64)]) {
      expect(usageError(() => load({ id }))).toStartWith("--id: expected a DNS label");
    }
  });
});

describe("agent --to", () => {
  test.each([
    ["3000", "127.0.0.1", 3000],
    ["localhost:3000", "localhost", 3000],
    ["192.168.1.20:8080", "192.168.1.20", 8080],
    ["[::1]:3000", "::1", 3000],
    ["http://pi.local:8080", "pi.local", 8080],
    ["http://pi.local", "pi.local", 80],
    ["http://pi.local:80/", "pi.local", 80],
    ["http://[::1]:3000", "::1", 3000],
  ])("accepts %s", (to, host, port) => {
    expect(load({ to }).to).toEqual({ host, port });
  });

  test("rejects --to abc naming the flag", () => {
    expect(usageError(() => load({ to: "abc" }))).toBe(
      "--to: expected PORT, HOST:PORT or http://HOST:PORT, got 'abc'",
    );
  });

  test.each(["0", "70000", "host:", "::1:3000", "http://pi.local/app", "ftp://pi.local:21"])(
    "rejects %s",
    (to) => {
      expect(usageError(() => load({ to }))).toStartWith("--to: expected PORT, HOST:PORT");
    },
  );

  test("says https:// services are not supported yet", () => {
    expect(usageError(() => load({ to: "https://pi.local:8443" }))).toBe(
      "--to: https:// local services are not supported yet; use http://HOST:PORT",
    );
  });
});

describe("agent --gateway", () => {
  test("adds port 8080 when none is given and keeps an explicit one", () => {
    expect(load({ gateway: "ws://gw.example.com" }).gateways).toEqual(["ws://gw.example.com:8080"]);
    expect(load({ gateway: "ws://gw.example.com:80" }).gateways).toEqual(["ws://gw.example.com:80"]);
    expect(load({ gateway: "wss://gw.example.com:443/" }).gateways).toEqual(["wss://gw.example.com:443"]);
    expect(load({ gateway: "ws://[::1]" }).gateways).toEqual(["ws://[::1]:8080"]);
  });

  test("accepts several gateways separated by commas", () => {
    expect(load({ gateway: "ws://a.example.com, wss://b.example.com:9000" }).gateways).toEqual([
      "ws://a.example.com:8080",
      "wss://b.example.com:9000",
    ]);
  });

  test("a repeated --gateway is the same as a comma-separated list", () => {
    const rawArgs = ["--gateway", "ws://a.example.com", "--gateway=wss://b.example.com:9000"];
    const flags = flagValues({}, { gateway: { type: "string" } }, rawArgs, new Set(["gateway"]));
    expect(loadAgentConfig({ ...BASE, ...flags }, ENV).gateways).toEqual([
      "ws://a.example.com:8080",
      "wss://b.example.com:9000",
    ]);
  });

  test("rejects another scheme, a path or a repeated gateway", () => {
    expect(usageError(() => load({ gateway: "http://gw.example.com" }))).toBe(
      "--gateway: the scheme must be ws:// or wss://, got 'http://gw.example.com'",
    );
    expect(usageError(() => load({ gateway: "ws://gw.example.com/tunnel" }))).toStartWith(
      "--gateway: expected only a scheme, a host and a port",
    );
    expect(usageError(() => load({ gateway: "gw.example.com:8080" }))).toStartWith("--gateway:");
    expect(usageError(() => load({ gateway: "ws://a:1,ws://a:1" }))).toBe(
      "--gateway: ws://a:1 is given twice",
    );
  });
});

describe("agent --tcp", () => {
  test("a repeated --tcp names each service the gateway may reach", () => {
    const rawArgs = ["--tcp", "ssh=127.0.0.1:22", "--tcp=db=[::1]:5432"];
    const flags = flagValues({}, { tcp: { type: "string" } }, rawArgs, new Set(["tcp"]));
    expect(loadAgentConfig({ ...BASE, ...flags }, ENV).tcp).toEqual([
      { name: "ssh", host: "127.0.0.1", port: 22 },
      { name: "db", host: "::1", port: 5432 },
    ]);
  });

  test("reads INDRANET_TCP as a comma list", () => {
    expect(load({}, { ...ENV, INDRANET_TCP: "ssh=localhost:22, vnc=10.0.0.2:5900" }).tcp).toEqual([
      { name: "ssh", host: "localhost", port: 22 },
      { name: "vnc", host: "10.0.0.2", port: 5900 },
    ]);
  });

  test("rejects a name that is not a DNS label, a missing address and a repeated name", () => {
    const expected = "expected NAME=HOST:PORT with NAME a DNS label such as ssh";
    expect(usageError(() => load({ tcp: "SSH=127.0.0.1:22" }))).toBe(
      `--tcp: ${expected}, got 'SSH=127.0.0.1:22'`,
    );
    expect(usageError(() => load({ tcp: "ssh" }))).toBe(`--tcp: ${expected}, got 'ssh'`);
    expect(usageError(() => load({ tcp: "ssh=22" }))).toStartWith("--tcp: expected");
    expect(usageError(() => load({ tcp: "ssh=a:1,ssh=b:2" }))).toBe("--tcp: the name ssh is given twice");
  });
});

describe("agent --connections", () => {
  test("holds one connection unless told otherwise", () => {
    expect(load({}).connections).toBe(1);
    expect(load({ connections: "3" }).connections).toBe(3);
    expect(load({}, { ...ENV, INDRANET_CONNECTIONS: "16" }).connections).toBe(16);
    expect(load({ connections: "2" }, { ...ENV, INDRANET_CONNECTIONS: "4" }).connections).toBe(2);
  });

  test.each(["0", "17", "-1", "1.5", "x", "0x2", " 2"])("rejects %p naming the flag", (connections) => {
    expect(usageError(() => load({ connections }))).toBe(
      `--connections: expected a whole number from 1 to 16, got '${connections}'`,
    );
  });

  test("names the variable when the value came from it", () => {
    expect(usageError(() => load({}, { ...ENV, INDRANET_CONNECTIONS: "99" }))).toBe(
      "INDRANET_CONNECTIONS: expected a whole number from 1 to 16, got '99'",
    );
  });
});

describe("agent secret", () => {
  test("warns that --secret is visible in ps", () => {
    const config = load({ secret: SECRET }, {});
    expect(config.secret).toBe(SECRET);
    expect(config.warnings).toEqual([
      "--secret is visible to other local users (ps); prefer INDRANET_SECRET or --secret-file",
    ]);
  });

  test("reads --secret-file and trims it", () => {
    const path = secretFile("ok.secret", `  ${SECRET}\n`, 0o600);
    const config = load({ "secret-file": path }, {});
    expect(config.secret).toBe(SECRET);
    expect(config.warnings).toEqual([]);
  });

  test("warns when the secret file is world-readable", () => {
    const path = secretFile("open.secret", SECRET, 0o604);
    expect(load({}, { INDRANET_SECRET_FILE: path }).warnings).toEqual([
      `INDRANET_SECRET_FILE: ${path} is accessible to group or others (mode 0604); run chmod 600 ${path}`,
    ]);
  });

  test("requires exactly one source", () => {
    expect(usageError(() => load({}, {}))).toBe(
      "a secret is required: --secret-file FILE, INDRANET_SECRET_FILE or INDRANET_SECRET",
    );
    expect(usageError(() => load({ "secret-file": "/x" }, ENV))).toBe(
      "give the secret only once (found INDRANET_SECRET and --secret-file)",
    );
  });

  test("rejects a short secret without echoing it", () => {
    const message = usageError(() => load({}, { INDRANET_SECRET: "hunter2" }));
    expect(message).toStartWith("INDRANET_SECRET must be at least 16 characters");
    expect(message).not.toContain("hunter2");
  });

  test("names the flag when the secret file is missing", () => {
    const path = join(dir, "missing.secret");
    expect(usageError(() => load({ "secret-file": path }, {}))).toBe(
      `--secret-file: cannot read ${path}: no such file`,
    );
  });
});

describe("agent --ca", () => {
  test("reads the PEM file", () => {
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const path = secretFile("ca.pem", pem, 0o644);
    expect(load({ ca: path }).ca).toBe(pem);
  });

  test("names --ca when the file is missing or not PEM", () => {
    const missing = join(dir, "missing.pem");
    expect(usageError(() => load({ ca: missing }))).toBe(`--ca: cannot read ${missing}: no such file`);
    const junk = secretFile("junk.pem", "hello", 0o644);
    expect(usageError(() => load({ ca: junk }))).toBe(
      `--ca: ${junk} holds no PEM certificate (BEGIN CERTIFICATE)`,
    );
  });
});
