import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { usageError } from "../../shared/usage-error.testing.ts";
import { loadGatewayConfig } from "../config.ts";

const dir = mkdtempSync(join(tmpdir(), "indranet-cluster-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOKEN = `[[tokens]]\ntoken = "tok"\nsecret = "0123456789abcdef-secret"\nagents = ["pi-*"]\n`;
const CLUSTER_SECRET = "cluster-secret-0123456789";

let files = 0;
function file(name: string, text: string): string {
  const path = join(dir, `${files++}-${name}`);
  writeFileSync(path, text);
  chmodSync(path, 0o600);
  return path;
}

const LOOPBACK = { bind: "127.0.0.1", dev: true };

describe("cluster settings", () => {
  test("none without --cluster-redis: one gateway on its own, holding requests for 5 s", () => {
    const config = loadGatewayConfig(LOOPBACK, {});
    expect(config.cluster).toBeUndefined();
    expect(config.holdMs).toBe(5_000);
  });

  test("from flags and variables", () => {
    const config = loadGatewayConfig(
      {
        ...LOOPBACK,
        "cluster-redis": "redis://10.0.0.9:6379",
        "cluster-advertise": "http://10.0.0.5:8082/",
        hold: "0",
      },
      { INDRANET_CLUSTER_SECRET: CLUSTER_SECRET },
    );
    expect(config.cluster).toEqual({
      redis: "redis://10.0.0.9:6379",
      secret: CLUSTER_SECRET,
      advertise: "http://10.0.0.5:8082",
    });
    expect(config.holdMs).toBe(0);
  });

  test("from the [cluster] table, a secret file found next to the config file", () => {
    const secretPath = file("cluster.secret", `${CLUSTER_SECRET}\n`);
    const configPath = file(
      "gateway.toml",
      `${TOKEN}\n[cluster]\nredis = "redis://127.0.0.1:6379"\nsecret_file = "${secretPath.split("/").pop()}"\n`,
    );
    const config = loadGatewayConfig({ config: configPath, bind: "127.0.0.1" }, {});
    expect(config.cluster).toEqual({ redis: "redis://127.0.0.1:6379", secret: CLUSTER_SECRET });
  });

  test("a flag wins over the file", () => {
    const configPath = file(
      "gateway.toml",
      `${TOKEN}\n[cluster]\nredis = "redis://a:1"\nsecret = "${CLUSTER_SECRET}"\n`,
    );
    const config = loadGatewayConfig(
      { config: configPath, bind: "127.0.0.1", "cluster-redis": "redis://b:2" },
      {},
    );
    expect(config.cluster?.redis).toBe("redis://b:2");
  });

  test("each mistake names its setting", () => {
    const env = { INDRANET_CLUSTER_SECRET: CLUSTER_SECRET };
    expect(usageError(() => loadGatewayConfig({ ...LOOPBACK, "cluster-redis": "http://x:1" }, env))).toBe(
      "--cluster-redis: expected redis://HOST:PORT or rediss://HOST:PORT, got 'http://x:1'",
    );
    expect(
      usageError(() => loadGatewayConfig({ ...LOOPBACK, "cluster-redis": "redis://x:1" }, {})),
    ).toStartWith("a cluster needs a secret shared by its gateways");
    expect(
      usageError(() =>
        loadGatewayConfig(
          { ...LOOPBACK, "cluster-redis": "redis://x:1" },
          { INDRANET_CLUSTER_SECRET: "short" },
        ),
      ),
    ).toStartWith("INDRANET_CLUSTER_SECRET must be at least 16 characters");
    expect(
      usageError(() =>
        loadGatewayConfig(
          { ...LOOPBACK, "cluster-redis": "redis://x:1", "cluster-advertise": "http://x/path" },
          env,
        ),
      ),
    ).toStartWith("--cluster-advertise: expected the ingress URL peers reach this gateway at");
    expect(usageError(() => loadGatewayConfig({ ...LOOPBACK, "cluster-advertise": "http://x:1" }, env))).toBe(
      "--cluster-advertise needs --cluster-redis (INDRANET_CLUSTER_REDIS, [cluster] redis)",
    );
    expect(
      usageError(() => loadGatewayConfig({ dev: true, "cluster-redis": "redis://x:1" }, env)),
    ).toStartWith("--cluster-advertise is needed when --bind is 0.0.0.0");
    expect(usageError(() => loadGatewayConfig({ ...LOOPBACK, hold: "soon" }, {}))).toStartWith(
      "--hold: expected",
    );
  });

  test("a secret given twice, and an unknown key in [cluster], are refused", () => {
    const twice = file(
      "gateway.toml",
      `${TOKEN}\n[cluster]\nredis = "redis://a:1"\nsecret = "${CLUSTER_SECRET}"\n`,
    );
    expect(
      usageError(() =>
        loadGatewayConfig({ config: twice, bind: "127.0.0.1" }, { INDRANET_CLUSTER_SECRET: CLUSTER_SECRET }),
      ),
    ).toBe(`give the cluster secret only once (found INDRANET_CLUSTER_SECRET and ${twice}: cluster.secret)`);
    const unknown = file("gateway.toml", `${TOKEN}\n[cluster]\nredis = "redis://a:1"\nnodes = 3\n`);
    expect(usageError(() => loadGatewayConfig({ config: unknown, bind: "127.0.0.1" }, {}))).toBe(
      `${unknown}: cluster: unknown key 'nodes' (known: redis, secret, secret_file, advertise)`,
    );
  });
});
