import { describe, expect, test } from "bun:test";
import { parseAdminAddress } from "./admin.ts";

describe("--admin address", () => {
  test("accepts HOST:PORT, [IPv6]:PORT, a bare port on loopback, and off", () => {
    expect(parseAdminAddress("0.0.0.0:9180")).toEqual({ hostname: "0.0.0.0", port: 9180, explicit: true });
    expect(parseAdminAddress("[::1]:0")).toEqual({ hostname: "::1", port: 0, explicit: true });
    expect(parseAdminAddress("9181")).toEqual({ hostname: "127.0.0.1", port: 9181, explicit: true });
    expect(parseAdminAddress("off")).toBe("off");
  });

  test("rejects anything else", () => {
    for (const text of ["", "host", "host:", ":80", "1.2.3.4:70000", "http://127.0.0.1:9180"]) {
      expect(parseAdminAddress(text)).toBeUndefined();
    }
  });
});
