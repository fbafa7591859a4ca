import { describe, expect, test } from "bun:test";
import { AdminAuth } from "./admin-auth.ts";

const at = (host: string, headers: Record<string, string> = {}) =>
  new Request("http://127.0.0.1:9180/api/requests", { headers: { host, ...headers } });

describe("the admin token", () => {
  test("without one, only requests naming a loopback host get in (no DNS rebinding)", () => {
    const open = new AdminAuth(undefined);
    for (const host of ["127.0.0.1:9180", "localhost:9180", "[::1]:9180", "127.0.0.2"]) {
      expect(open.authorized(at(host))).toBe(true);
    }
    for (const host of ["evil.example:9180", "127.0.0.1.evil.example", "[::2]:9180"]) {
      expect(open.authorized(at(host))).toBe(false);
    }
  });

  test("with one, the bearer header or the login cookie, never the token as a cookie", async () => {
    const token = "admin-token-0123456789";
    const auth = new AdminAuth(token);
    expect(auth.authorized(at("gw.example"))).toBe(false);
    expect(auth.authorized(at("gw.example", { authorization: `Bearer ${token}` }))).toBe(true);
    expect(auth.authorized(at("gw.example", { authorization: "Bearer wrong-token-wrong" }))).toBe(false);
    expect(auth.authorized(at("gw.example", { cookie: `indranet_admin=${token}` }))).toBe(false);
    const login = await auth.login(
      new Request("http://gw.example/login", { method: "POST", body: new URLSearchParams({ token }) }),
    );
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] as string;
    expect(auth.authorized(at("gw.example", { cookie }))).toBe(true);
  });
});
