import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { usageError } from "../shared/usage-error.testing.ts";
import { loadGatewayConfig, parseConfigFile, UNLIMITED_BODY } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "indranet-gw-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = "0123456789abcdef-secret";
const TOKEN = `[[tokens]]\ntoken = "tok-kitchen"\nsecret = "${SECRET}"\nagents = ["pi-kitchen", "pi-*"]\n`;

let files = 0;
/** Writes a config file readable by its owner only, as an operator should. */
function configFile(text: string, mode = 0o600): string {
  const path = join(dir, `gateway-${files++}.toml`);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

function load(flags: Record<string, string | boolean>, env: Record<string, string> = {}) {
  return loadGatewayConfig(flags, env);
}

describe("gateway config", () => {
  test("starts in --dev with defaults and a generated token for any agent", () => {
    const config = load({ dev: true });
    expect(config).toMatchObject({
      domain: "localhost",
      bind: "0.0.0.0",
      httpPort: 8082,
      wsPort: 8080,
      requestTimeoutMs: 10_000,
      heartbeatIntervalMs: 15_000,
      maxStreamsPerAgent: 1024,
      maxRequestBodyBytes: UNLIMITED_BODY,
      logLevel: "info",
      logFormat: "text",
      dev: true,
      warnings: [],
    });
    expect(config.tokens).toHaveLength(1);
    const [token] = config.tokens;
    expect(token?.token).toMatch(/^dev-[0-9a-f]+$/);
    expect(token?.secret).toMatch(/^[0-9a-f]{64}$/);
    expect(token?.agents).toEqual(["*"]);
    expect(config.devCredentials).toEqual({ token: token?.token ?? "", secret: token?.secret ?? "" });
  });

  test("refuses to start without tokens unless --dev", () => {
    expect(usageError(() => load({}))).toBe(
      "no tokens configured: pass --config FILE with [[tokens]] or use --dev",
    );
  });

  test("--dev keeps configured tokens and generates none", () => {
    const config = load({ dev: true, config: configFile(TOKEN) });
    expect(config.tokens.map((t) => t.token)).toEqual(["tok-kitchen"]);
    expect(config.devCredentials).toBeUndefined();
  });

  test("reads settings and tokens from the file", () => {
    const path = configFile(
      `domain = "Tunnel.Example.com"\nbind = "127.0.0.1"\nhttp_port = 9082\nws_port = 9080\n` +
        `request_timeout = 2.5\nheartbeat_interval = 5\nmax_streams_per_agent = 8\nmax_request_body = 1048576\n` +
        `log_level = "debug"\nlog_format = "json"\n${TOKEN}`,
    );
    expect(load({ config: path })).toMatchObject({
      domain: "tunnel.example.com",
      bind: "127.0.0.1",
      httpPort: 9082,
      wsPort: 9080,
      requestTimeoutMs: 2500,
      heartbeatIntervalMs: 5000,
      maxStreamsPerAgent: 8,
      maxRequestBodyBytes: 1_048_576,
      logLevel: "debug",
      logFormat: "json",
      configPath: path,
      tokens: [{ token: "tok-kitchen", secret: SECRET, agents: ["pi-kitchen", "pi-*"] }],
    });
  });

  test("flag overrides env overrides file", () => {
    const path = configFile(`http_port = 1001\nws_port = 2001\nheartbeat_interval = 30\n${TOKEN}`);
    const env = { INDRANET_CONFIG: path, INDRANET_HTTP_PORT: "1002", INDRANET_WS_PORT: "2002" };
    const config = load({ "http-port": "1003" }, env);
    expect(config.httpPort).toBe(1003);
    expect(config.wsPort).toBe(2002);
    expect(config.heartbeatIntervalMs).toBe(30_000);
  });

  test("treats an empty environment variable as unset", () => {
    expect(load({ dev: true }, { INDRANET_HTTP_PORT: "" }).httpPort).toBe(8082);
  });

  test("accepts port 0 for an ephemeral port and decimal seconds", () => {
    const config = load({ dev: true, "http-port": "0", "ws-port": "0", "request-timeout": "0.25" });
    expect([config.httpPort, config.wsPort, config.requestTimeoutMs]).toEqual([0, 0, 250]);
  });

  test("rejects --http-port abc naming the flag", () => {
    expect(usageError(() => load({ dev: true, "http-port": "abc" }))).toBe(
      "--http-port: expected a port from 0 to 65535, got 'abc'",
    );
    expect(usageError(() => load({ dev: true, "ws-port": "65536" }))).toContain("--ws-port:");
  });

  test("names the environment variable when its value is wrong", () => {
    expect(usageError(() => load({ dev: true }, { INDRANET_REQUEST_TIMEOUT: "0" }))).toStartWith(
      "INDRANET_REQUEST_TIMEOUT: expected a number of seconds above 0",
    );
  });

  test("rejects a timeout too long for a timer", () => {
    expect(usageError(() => load({ dev: true, heartbeat: "9999999" }))).toContain("at most 2147483");
  });

  test("max_request_body 0 means no limit", () => {
    expect(load({ dev: true, "max-body": "0" }).maxRequestBodyBytes).toBe(UNLIMITED_BODY);
    expect(load({ dev: true, "max-body": "1024" }).maxRequestBodyBytes).toBe(1024);
  });

  test("lowercases the domain and rejects one that is not a DNS name", () => {
    expect(load({ dev: true, domain: "Tunnel.Example.COM" }).domain).toBe("tunnel.example.com");
    expect(usageError(() => load({ dev: true, domain: "bad_domain..com" }))).toStartWith(
      "--domain: expected a DNS name",
    );
  });

  test("rejects an unknown log level naming the flag", () => {
    expect(usageError(() => load({ dev: true, "log-level": "loud" }))).toBe(
      "--log-level: expected one of debug, info, warn, error, got 'loud'",
    );
  });
});

describe("gateway config file", () => {
  test("names the file when it cannot be read", () => {
    const path = join(dir, "missing.toml");
    expect(usageError(() => load({ config: path }))).toBe(`cannot read config file ${path}: no such file`);
  });

  test("prefixes a TOML syntax error with the file name", () => {
    const path = configFile("domain = ");
    expect(usageError(() => parseConfigFile(path))).toStartWith(`${path}: TOML Parse error`);
  });

  test("names the file and key when a value has the wrong type", () => {
    const path = configFile(`http_port = "8082"\n${TOKEN}`);
    expect(usageError(() => parseConfigFile(path))).toBe(`${path}: http_port must be a port from 0 to 65535`);
  });

  test("reports an unknown key", () => {
    const path = configFile(`htp_port = 8082\n${TOKEN}`);
    expect(usageError(() => parseConfigFile(path))).toStartWith(
      `${path}: unknown key 'htp_port' (known: domain,`,
    );
  });

  test("reports an unknown key in a token", () => {
    const path = configFile(`${TOKEN}secrets = "x"\n`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens[0]: unknown key 'secrets' (known: token, secret, secret_file, agents)`,
    );
  });

  test("names the file and key when a token has no secret", () => {
    const path = configFile(`[[tokens]]\ntoken = "tok-a"\nagents = ["pi"]\n`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens[0] has no secret: set secret or secret_file`,
    );
  });

  test("rejects a token with both secret and secret_file", () => {
    const path = configFile(`${TOKEN}secret_file = "x.secret"\n`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens[0] has both secret and secret_file: keep one`,
    );
  });

  test("rejects a short secret and says why", () => {
    const path = configFile(`[[tokens]]\ntoken = "tok-a"\nsecret = "hunter2"\nagents = ["pi"]\n`);
    const message = usageError(() => parseConfigFile(path));
    expect(message).toStartWith(`${path}: tokens[0].secret must be at least 16 characters`);
    expect(message).toContain("guessed offline");
    expect(message).not.toContain("hunter2");
  });

  test("names the token whose agents are not an array of strings", () => {
    const path = configFile(`${TOKEN}\n[[tokens]]\ntoken = "tok-b"\nsecret = "${SECRET}"\nagents = "pi"\n`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens[1].agents must be an array of strings`,
    );
  });

  test("rejects an empty agents list and an invalid pattern", () => {
    const empty = configFile(`[[tokens]]\ntoken = "tok-a"\nsecret = "${SECRET}"\nagents = []\n`);
    expect(usageError(() => parseConfigFile(empty))).toBe(
      `${empty}: tokens[0].agents must list at least one agent id or pattern`,
    );
    const invalid = configFile(
      `[[tokens]]\ntoken = "tok-a"\nsecret = "${SECRET}"\nagents = ["pi", "Pi_*"]\n`,
    );
    expect(usageError(() => parseConfigFile(invalid))).toStartWith(
      `${invalid}: tokens[0].agents[1] 'Pi_*' is not an agent id or pattern`,
    );
  });

  test("rejects a token used twice", () => {
    const path = configFile(`${TOKEN}\n${TOKEN}`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens[1].token repeats tokens[0].token: each token must be unique`,
    );
  });

  test("rejects tokens that are not an array of tables", () => {
    const path = configFile(`tokens = "tok-a"\n`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens must be an array of tables, written [[tokens]]`,
    );
  });

  test("reads secret_file next to the config file and trims its newline", () => {
    writeFileSync(join(dir, "kitchen.secret"), `${SECRET}\n`, { mode: 0o600 });
    const path = configFile(`[[tokens]]\ntoken = "tok-a"\nsecret_file = "kitchen.secret"\nagents = ["pi"]\n`);
    const config = parseConfigFile(path);
    expect(config.tokens?.[0]?.secret).toBe(SECRET);
    expect(config.warnings).toEqual([]);
  });

  test("names the key when the secret file is missing", () => {
    const path = configFile(`[[tokens]]\ntoken = "tok-a"\nsecret_file = "nope.secret"\nagents = ["pi"]\n`);
    expect(usageError(() => parseConfigFile(path))).toBe(
      `${path}: tokens[0].secret_file: cannot read ${join(dir, "nope.secret")}: no such file`,
    );
  });

  test("warns when the secret file is world-readable", () => {
    const secretPath = join(dir, "open.secret");
    writeFileSync(secretPath, SECRET);
    chmodSync(secretPath, 0o644);
    const path = configFile(`[[tokens]]\ntoken = "tok-a"\nsecret_file = "${secretPath}"\nagents = ["pi"]\n`);
    const config = load({ config: path });
    expect(config.tokens[0]?.secret).toBe(SECRET);
    expect(config.warnings).toEqual([
      `${path}: tokens[0].secret_file: ${secretPath} is accessible to group or others (mode 0644); ` +
        `run chmod 600 ${secretPath}`,
    ]);
  });

  test("warns when a config file holding secrets is readable by others", () => {
    const path = configFile(TOKEN, 0o640);
    expect(load({ config: path }).warnings).toEqual([
      `the config file holds secrets: ${path} is accessible to group or others (mode 0640); run chmod 600 ${path}`,
    ]);
  });
});
