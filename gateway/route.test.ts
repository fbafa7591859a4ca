import { describe, expect, test } from "bun:test";
import { matchHostToAgentId } from "./route.ts";

const DOMAIN = "tunnel.example.com";

describe("routing by Host", () => {
  test("matches pi.tunnel.example.com:8082 to pi", () => {
    expect(matchHostToAgentId("pi.tunnel.example.com:8082", DOMAIN)).toBe("pi");
  });

  test("matches without a port, in any letter case and with a trailing dot", () => {
    expect(matchHostToAgentId("pi-kitchen.tunnel.example.com", DOMAIN)).toBe("pi-kitchen");
    expect(matchHostToAgentId("Pi-Kitchen.Tunnel.Example.COM:80", DOMAIN)).toBe("pi-kitchen");
    expect(matchHostToAgentId("pi.tunnel.example.com.:8082", DOMAIN)).toBe("pi");
  });

  test("matches <id>.localhost for a dev box", () => {
    expect(matchHostToAgentId("dev.localhost:8082", "localhost")).toBe("dev");
  });

  test("does not match the bare domain, a deeper name or another domain", () => {
    for (const host of [
      "tunnel.example.com",
      "a.pi.tunnel.example.com",
      "pi.tunnel.example.org",
      "pi.xtunnel.example.com",
      "pi.tunnel.example.co",
      ".tunnel.example.com",
    ]) {
      expect(matchHostToAgentId(host, DOMAIN)).toBeNull();
    }
  });

  test("does not match a missing Host, an IP address or a label that is not an agent id", () => {
    expect(matchHostToAgentId(null, DOMAIN)).toBeNull();
    expect(matchHostToAgentId("[::1]:8082", DOMAIN)).toBeNull();
    expect(matchHostToAgentId("127.0.0.1:8082", DOMAIN)).toBeNull();
    expect(matchHostToAgentId("pi_x.tunnel.example.com", DOMAIN)).toBeNull();
    expect(matchHostToAgentId("-pi.tunnel.example.com", DOMAIN)).toBeNull();
  });
});
