// Custom host names route to agents besides <id>.<domain>, and a reload adds new ones.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import { Agent, Gateway } from "./harness.ts";

/** A service that answers every request with its own name, so a test sees which agent served. */
function namedService(name: string): Server<undefined> {
  return Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(name) });
}

const hosts = (entries: [string, string][]) =>
  entries.map(([name, agent]) => `\n[[hosts]]\nname = "${name}"\nagent = "${agent}"\n`).join("");

let gateway: Gateway;
const services = ["pi-kitchen", "pi-hall"].map(namedService);
const agents: Agent[] = [];

beforeAll(async () => {
  gateway = await Gateway.start({
    toml: hosts([
      ["kitchen.example.org", "pi-kitchen"],
      ["*.hall.example.org", "pi-hall"],
    ]),
  });
  for (const [i, id] of ["pi-kitchen", "pi-hall"].entries()) {
    agents.push(await Agent.start(gateway, { id, to: services[i]?.port ?? 0 }));
  }
}, 30_000);

afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.stop()));
  await gateway.stop();
  for (const service of services) service.stop(true);
});

function get(host: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${gateway.httpPort}/`, { headers: { host } });
}

describe("custom host names", () => {
  test("an exact name reaches its agent, in any letter case, with any port or a trailing dot", async () => {
    for (const host of ["kitchen.example.org", "Kitchen.Example.ORG:8443", "kitchen.example.org.:80"]) {
      const res = await get(host);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("pi-kitchen");
    }
  });

  test("a wildcard reaches its agent from names any depth below it", async () => {
    for (const host of ["www.hall.example.org", "a.b.HALL.example.org:8082"]) {
      const res = await get(host);
      expect(await res.text()).toBe("pi-hall");
    }
    const bare = await get("hall.example.org");
    expect(bare.status).toBe(404);
    expect(bare.headers.get("x-tunnel-error")).toBe("unknown_host");
  });

  test("<id>.<domain> still reaches the agent", async () => {
    expect(await (await gateway.fetch("pi-kitchen", "/")).text()).toBe("pi-kitchen");
  });

  test("SIGHUP adds a name", async () => {
    expect((await get("pantry.example.org")).status).toBe(404);
    appendFileSync(join(gateway.dir, "gateway.toml"), hosts([["pantry.example.org", "pi-kitchen"]]));
    gateway.proc.child.kill("SIGHUP");
    await gateway.proc.waitFor(/config reloaded: 1 token\(s\), 3 host name\(s\)/);
    const res = await get("pantry.example.org");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("pi-kitchen");
  });
});
