import { describe, expect, test } from "bun:test";
import { usageError } from "../shared/usage-error.testing.ts";
import { loadGatewayConfig } from "./config.ts";
import { configFiles } from "./config-file.testing.ts";
import { HostTable } from "./hosts.ts";

const configFile = configFiles();
const host = (name: string, agent: string) => `[[hosts]]\nname = "${name}"\nagent = "${agent}"\n`;

describe("custom host names", () => {
  const table = new HostTable([
    { name: "kitchen.example.org", agent: "pi-kitchen" },
    { name: "*.kitchen.example.org", agent: "pi-wild" },
    { name: "*.deep.kitchen.example.org", agent: "pi-deep" },
  ]);

  test("an exact name, in any letter case, with a port or a trailing dot", () => {
    for (const name of [
      "kitchen.example.org",
      "Kitchen.Example.ORG:8082",
      "kitchen.example.org.",
      "kitchen.example.org.:80",
    ]) {
      expect(table.lookup(name)).toBe("pi-kitchen");
    }
  });

  test("a wildcard matches names any depth below it, the longest wildcard first, not its own name", () => {
    expect(table.lookup("a.kitchen.example.org")).toBe("pi-wild");
    expect(table.lookup("a.b.kitchen.example.org:8082")).toBe("pi-wild");
    expect(table.lookup("x.deep.kitchen.example.org")).toBe("pi-deep");
    expect(table.lookup("deep.kitchen.example.org")).toBe("pi-wild");
    expect(table.lookup("kitchen.example.com")).toBeNull();
    expect(table.lookup("xkitchen.example.org")).toBeNull();
    expect(table.lookup("[::1]:8082")).toBeNull();
    expect(table.lookup(null)).toBeNull();
  });

  test("are read from [[hosts]], lowercase and without a trailing dot", () => {
    const config = loadGatewayConfig(
      {
        config: configFile(
          host("Kitchen.Example.org.", "pi-kitchen") + host("*.hall.example.org", "pi-hall"),
        ),
      },
      {},
    );
    expect(config.hosts).toEqual([
      { name: "kitchen.example.org", agent: "pi-kitchen" },
      { name: "*.hall.example.org", agent: "pi-hall" },
    ]);
  });

  test("a name given twice, or claimed by two agents, names both entries", () => {
    const twice = configFile(
      host("a.example.org", "pi-a") + host("b.example.org", "pi-b") + host("A.example.org", "pi-a"),
    );
    expect(usageError(() => loadGatewayConfig({ config: twice }, {}))).toBe(
      `${twice}: hosts[2].name 'a.example.org' repeats hosts[0].name: give each name once`,
    );
    const claimed = configFile(host("*.example.org", "pi-a") + host("*.example.org", "pi-b"));
    expect(usageError(() => loadGatewayConfig({ config: claimed }, {}))).toBe(
      `${claimed}: hosts[1].name '*.example.org' is claimed by agent 'pi-b' here and by 'pi-a' in hosts[0]`,
    );
  });

  test("a name under the domain may only name its own agent", () => {
    const path = configFile(host("pi-a.tunnel.example.com", "pi-b"));
    expect(usageError(() => loadGatewayConfig({ config: path, domain: "tunnel.example.com" }, {}))).toBe(
      `${path}: hosts[0].name 'pi-a.tunnel.example.com' is agent 'pi-a's own name under tunnel.example.com, not 'pi-b's`,
    );
  });

  test("each mistake names the file and the key", () => {
    const cases: [string, string][] = [
      ['hosts = "x"\n', "hosts must be an array of tables, written [[hosts]]"],
      [
        host("a..example.org", "pi-a"),
        "hosts[0].name must be a host name such as kitchen.example.org, or *.kitchen.example.org",
      ],
      [
        host("a.*.example.org", "pi-a"),
        "hosts[0].name must be a host name such as kitchen.example.org, or *.kitchen.example.org",
      ],
      [host("a.example.org", "Pi_A"), "hosts[0].agent must be an agent id (lowercase a-z, 0-9 and '-')"],
      [
        '[[hosts]]\nname = "a.example.org"\nagent = "pi-a"\nport = 80\n',
        "hosts[0]: unknown key 'port' (known: name, agent)",
      ],
    ];
    for (const [text, message] of cases) {
      const path = configFile(text);
      expect(usageError(() => loadGatewayConfig({ config: path }, {}))).toBe(`${path}: ${message}`);
    }
  });
});
