import { describe, expect, test } from "bun:test";
import { CidrList, parseAddress, parseCidr } from "./cidr.ts";
import { clientAddress } from "./client-address.ts";

describe("addresses and ranges", () => {
  test("an IPv4 range holds the addresses under its prefix and no others", () => {
    const list = new CidrList(["203.0.113.0/24", "198.51.100.7"]);
    expect(list.has("203.0.113.0")).toBe(true);
    expect(list.has("203.0.113.255")).toBe(true);
    expect(list.has("203.0.114.1")).toBe(false);
    expect(list.has("198.51.100.7")).toBe(true);
    expect(list.has("198.51.100.8")).toBe(false);
  });

  test("an IPv6 range holds the addresses under its prefix, however they are spelled", () => {
    const list = new CidrList(["2001:db8::/32", "::1"]);
    expect(list.has("2001:db8:ffff::1")).toBe(true);
    expect(list.has("2001:DB8:0:0:0:0:0:9")).toBe(true);
    expect(list.has("2001:db9::1")).toBe(false);
    expect(list.has("0:0:0:0:0:0:0:1")).toBe(true);
    expect(list.has("::2")).toBe(false);
  });

  test("an IPv4-mapped IPv6 address is the IPv4 address, in the list and in the lookup", () => {
    expect(new CidrList(["127.0.0.0/8"]).has("::ffff:127.0.0.1")).toBe(true);
    expect(new CidrList(["::ffff:10.1.2.3"]).has("10.1.2.3")).toBe(true);
    expect(new CidrList(["::ffff:10.1.2.0/120"]).has("10.1.2.99")).toBe(true);
    expect(parseAddress("::ffff:1.2.3.4")).toEqual({ v6: false, bits: 0x01020304n });
    // IPv4 and IPv6 never match each other otherwise.
    expect(new CidrList(["0.0.0.0/0"]).has("::1")).toBe(false);
    expect(new CidrList(["::/0"]).has("127.0.0.1")).toBe(false);
  });

  test("/0 holds every address of its family; host bits of a range are ignored", () => {
    expect(new CidrList(["0.0.0.0/0"]).has("8.8.8.8")).toBe(true);
    expect(new CidrList(["::/0"]).has("2001:db8::1")).toBe(true);
    expect(parseCidr("10.1.2.3/8")).toEqual({ v6: false, bits: 0x0a000000n, prefix: 8 });
  });

  test("malformed addresses and ranges are refused, and match nothing", () => {
    for (const text of [
      "",
      "256.0.0.1",
      "1.2.3",
      "01.2.3.4",
      "1.2.3.4/33",
      "1.2.3.4/",
      "1.2.3.4/-1",
      "::1/129",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1.2.3.4::",
      "fe80::1%eth0",
      "::ffff:1.2.3.4/64",
      "example.org",
    ]) {
      expect(parseCidr(text)).toBeUndefined();
    }
    expect(new CidrList(["0.0.0.0/0"]).has("not-an-address")).toBe(false);
  });
});

describe("the client behind trusted proxies", () => {
  const proxies = new CidrList(["10.0.0.0/8", "::1"]);

  test("is the socket's address when the socket is not a trusted proxy", () => {
    expect(clientAddress("198.51.100.1", "203.0.113.9", proxies)).toBe("198.51.100.1");
  });

  test("is the right-most X-Forwarded-For entry no trusted proxy wrote", () => {
    expect(clientAddress("10.0.0.5", "1.1.1.1, 203.0.113.9, 10.0.0.4", proxies)).toBe("203.0.113.9");
    expect(clientAddress("::1", "203.0.113.9", proxies)).toBe("203.0.113.9");
  });

  test("is the first entry when every one is a proxy, and the socket's without the header", () => {
    expect(clientAddress("10.0.0.5", "10.0.0.9, 10.0.0.4", proxies)).toBe("10.0.0.9");
    expect(clientAddress("10.0.0.5", null, proxies)).toBe("10.0.0.5");
  });
});
