import { describe, expect, test } from "bun:test";
import { signHop, verifyHop } from "./hop.ts";

const SECRET = "cluster-secret-0123456789";
const NOW = 1_790_000_000_000;

const REQUEST = { agentId: "pi-1", requestId: "req-1", method: "POST", path: "/orders?x=1" };
const other = (changes: Partial<typeof REQUEST>) => ({ ...REQUEST, ...changes });

describe("the hop signature", () => {
  const header = signHop(SECRET, "0a1b2c3d", REQUEST, NOW);

  test("names the sending gateway when it verifies", () => {
    expect(verifyHop(SECRET, header, REQUEST, NOW + 1_000)).toBe("0a1b2c3d");
  });

  test("is refused under another secret, for another agent, request, method or path, or out of its time", () => {
    expect(verifyHop("another-secret-0123456789", header, REQUEST, NOW)).toBeNull();
    expect(verifyHop(SECRET, header, other({ agentId: "pi-2" }), NOW)).toBeNull();
    expect(verifyHop(SECRET, header, other({ requestId: "req-2" }), NOW)).toBeNull();
    expect(verifyHop(SECRET, header, other({ method: "DELETE" }), NOW)).toBeNull();
    expect(verifyHop(SECRET, header, other({ path: "/admin" }), NOW)).toBeNull();
    expect(verifyHop(SECRET, header, REQUEST, NOW + 31_000)).toBeNull();
    expect(verifyHop(SECRET, header, REQUEST, NOW - 31_000)).toBeNull();
  });

  test("is refused when any part is changed or missing", () => {
    const [id, at, mac] = header.split(".") as [string, string, string];
    expect(verifyHop(SECRET, `ffff.${at}.${mac}`, REQUEST, NOW)).toBeNull();
    expect(verifyHop(SECRET, `${id}.${NOW + 1}.${mac}`, REQUEST, NOW)).toBeNull();
    expect(verifyHop(SECRET, `${id}.${at}.${mac.slice(1)}0`, REQUEST, NOW)).toBeNull();
    expect(verifyHop(SECRET, `${id}.${at}`, REQUEST, NOW)).toBeNull();
    expect(verifyHop(SECRET, `${header}.x`, REQUEST, NOW)).toBeNull();
    expect(verifyHop(SECRET, "", REQUEST, NOW)).toBeNull();
  });
});
