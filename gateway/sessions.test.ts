import { expect, test } from "bun:test";
import type { AgentSession } from "./session.ts";
import { SessionRegistry } from "./sessions.ts";

/** What the registry reads of a session. */
function session(agentId: string): AgentSession {
  return {
    info: { agentId, token: "t" },
    stopping: false,
    probeDeadline: 0,
    closed: false,
    bytesIn: 0,
    bytesOut: 0,
    ping() {},
  } as unknown as AgentSession;
}

test("an agent whose sessions all stop has left: not picked, not listed, observers told once", () => {
  const registry = new SessionRegistry();
  const events: string[] = [];
  registry.observe({
    arrived: (id) => events.push(`arrived ${id}`),
    left: (id) => events.push(`left ${id}`),
  });
  const first = session("pi-x");
  registry.add(first);
  first.stopping = true;
  registry.stopping(first);
  expect(registry.pick("pi-x")).toBeUndefined();
  expect([...registry.agentIds()]).toEqual([]);
  expect(events).toEqual(["arrived pi-x", "left pi-x"]);

  // Its successor arrives while the stopping session still finishes its streams.
  const second = session("pi-x");
  registry.add(second);
  second.probeDeadline = 0;
  expect(registry.pick("pi-x")).toBe(second);
  expect([...registry.agentIds()]).toEqual(["pi-x"]);
  registry.remove(first);
  expect(events).toEqual(["arrived pi-x", "left pi-x", "arrived pi-x"]);
});

test("one stopping session among several: the others take the requests, nobody is told it left", () => {
  const registry = new SessionRegistry();
  const left: string[] = [];
  registry.observe({ arrived: () => {}, left: (id) => left.push(id) });
  const a = session("pi-y");
  const b = session("pi-y");
  registry.add(a);
  registry.add(b);
  a.probeDeadline = 0;
  a.stopping = true;
  registry.stopping(a);
  for (let i = 0; i < 4; i++) expect(registry.pick("pi-y")).toBe(b);
  expect(left).toEqual([]);
});
