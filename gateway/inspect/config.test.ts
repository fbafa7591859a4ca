import { describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { usageError } from "../../shared/usage-error.testing.ts";
import { loadGatewayConfig } from "../config.ts";
import { configFiles, TOKEN } from "../config-files.testing.ts";

const { dir, file } = configFiles("indranet-inspect-config-");
const ADMIN_TOKEN = "admin-token-0123456789";

describe("inspector settings", () => {
  test("on by default: 200 exchanges, 64 KiB of each body, no token on loopback", () => {
    const config = loadGatewayConfig({ dev: true }, {});
    expect(config).toMatchObject({ inspect: 200, inspectBody: 65_536, inspectOff: [] });
    expect(config.adminToken).toBeUndefined();
  });

  test("flags, and agents whose bodies are never kept", () => {
    const path = file(
      `${TOKEN}\n[agents."pi-kitchen"]\ninspect = false\n[agents."pi-hall"]\ninspect = true\n`,
    );
    const config = loadGatewayConfig({ config: path, inspect: "0", "inspect-body": "0" }, {});
    expect(config).toMatchObject({ inspect: 0, inspectBody: 0, inspectOff: ["pi-kitchen"] });
  });

  test("the admin token from a variable or a file next to the config", () => {
    expect(loadGatewayConfig({ dev: true }, { INDRANET_ADMIN_TOKEN: ADMIN_TOKEN }).adminToken).toBe(
      ADMIN_TOKEN,
    );
    const tokenPath = join(dir, "admin.token");
    writeFileSync(tokenPath, `${ADMIN_TOKEN}\n`);
    chmodSync(tokenPath, 0o600);
    const path = file(`admin_token_file = "admin.token"\n${TOKEN}`);
    expect(loadGatewayConfig({ config: path }, {}).adminToken).toBe(ADMIN_TOKEN);
  });

  test("off loopback the admin listener needs a token; mistakes name their setting", () => {
    expect(usageError(() => loadGatewayConfig({ dev: true, admin: "0.0.0.0:9180" }, {}))).toStartWith(
      "--admin 0.0.0.0:9180 is not loopback",
    );
    const config = loadGatewayConfig(
      { dev: true, admin: "0.0.0.0:9180" },
      { INDRANET_ADMIN_TOKEN: ADMIN_TOKEN },
    );
    expect(config.adminToken).toBe(ADMIN_TOKEN);
    expect(usageError(() => loadGatewayConfig({ dev: true }, { INDRANET_ADMIN_TOKEN: "short" }))).toStartWith(
      "INDRANET_ADMIN_TOKEN must be at least 16 characters",
    );
    expect(usageError(() => loadGatewayConfig({ dev: true, inspect: "lots" }, {}))).toStartWith(
      "--inspect: expected",
    );
    const bad = file(`${TOKEN}\n[agents."pi-x"]\ninspect = "no"\n`);
    expect(usageError(() => loadGatewayConfig({ config: bad }, {}))).toBe(
      `${bad}: agents."pi-x".inspect must be true or false`,
    );
  });
});
