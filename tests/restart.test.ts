// A gateway restart nobody notices: the new process starts on the same ports while the old one
// runs, SIGTERM makes the old one close its listeners, send GoAway and finish its streams, the
// agent moves over, and held requests cover the gap.
import { afterEach, expect, test } from "bun:test";
import { freePort } from "./cluster-services.ts";
import { Agent, Gateway } from "./harness.ts";
import { startEchoService } from "./services.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Several clients sending requests until `stop` resolves; every answer that is not exact counts. */
async function continuousLoad(gateway: Gateway, agentId: string, stop: Promise<unknown>, clients = 4) {
  let done = false;
  void stop.then(() => (done = true));
  const failures: string[] = [];
  let ok = 0;
  const client = async (n: number) => {
    for (let i = 0; !done; i++) {
      const body = `client ${n} request ${i}`;
      try {
        const res = await gateway.fetch(agentId, "/echo", { method: "POST", body });
        const text = await res.text();
        if (res.status === 200 && JSON.parse(text).body === body) ok++;
        else failures.push(`${res.status} ${text.slice(0, 200)}`);
      } catch (error) {
        failures.push(String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
  return { ok, failures };
}

test("a rolling restart under continuous load: no request fails and the agent moves to the new process", async () => {
  const service = startEchoService();
  cleanups.push(() => service.stop(true));
  // Ports given explicitly, as in production: only those are opened to be shared.
  const ports = { httpPort: await freePort(), wsPort: await freePort() };
  const old = await Gateway.start({ ...ports, args: ["--shutdown-grace", "5"] });
  cleanups.push(() => old.stop());
  const agent = await Agent.start(old, { id: "pi-roll", to: service.port });
  cleanups.push(() => agent.stop());

  const finished = Promise.withResolvers<void>();
  const load = continuousLoad(old, "pi-roll", finished.promise);
  await Bun.sleep(500);
  const successor = await Gateway.start({
    httpPort: old.httpPort,
    wsPort: old.wsPort,
    args: ["--shutdown-grace", "5"],
  });
  cleanups.push(() => successor.stop());
  await Bun.sleep(300);
  old.proc.child.kill("SIGTERM");
  expect(await old.proc.exited(10_000)).toBe(0);
  await successor.proc.waitFor(/pi-roll POST \/echo 200/);
  await Bun.sleep(500);
  finished.resolve();
  const { ok, failures } = await load;

  expect(failures).toEqual([]);
  expect(ok).toBeGreaterThan(20);
  expect(old.proc.output.text).toContain("pi-roll POST /echo 200");
  expect(agent.proc.output.text).toContain("gateway is going away");
}, 30_000);
