import { describe, expect, test } from "bun:test";
import { signHop, verifyHop } from "./hop.ts";

const SECRET = "cluster-secret-0123456789";
const NOW = 1_790_000_000_000;

describe("the hop signature", () => {
  const header = signHop(SECRET, "0a1b2c3d", "pi-1", "req-1", NOW);

  test("names the sending gateway when it verifies", () => {
    expect(verifyHop(SECRET, header, "pi-1", "req-1", NOW + 1_000)).toBe("0a1b2c3d");
  });

  test("is refused under another secret, for another agent or request, or out of its time", () => {
    expect(verifyHop("another-secret-0123456789", header, "pi-1", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, header, "pi-2", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, header, "pi-1", "req-2", NOW)).toBeNull();
    expect(verifyHop(SECRET, header, "pi-1", "req-1", NOW + 31_000)).toBeNull();
    expect(verifyHop(SECRET, header, "pi-1", "req-1", NOW - 31_000)).toBeNull();
  });

  test("is refused when any part is changed or missing", () => {
    const [id, at, mac] = header.split(".") as [string, string, string];
    expect(verifyHop(SECRET, `ffff.${at}.${mac}`, "pi-1", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, `${id}.${NOW + 1}.${mac}`, "pi-1", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, `${id}.${at}.${mac.slice(1)}0`, "pi-1", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, `${id}.${at}`, "pi-1", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, `${header}.x`, "pi-1", "req-1", NOW)).toBeNull();
    expect(verifyHop(SECRET, "", "pi-1", "req-1", NOW)).toBeNull();
  });
});
