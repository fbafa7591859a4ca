import { describe, expect, test } from "bun:test";
import { gatewayShare } from "./client.ts";

const [A, B, C] = ["ws://a:8080", "ws://b:8080", "ws://c:8080"];

describe("which gateways each connection dials", () => {
  test("a single connection fails over across every gateway", () => {
    expect(gatewayShare([A, B, C], 0, 1)).toEqual([A, B, C]);
  });

  test("with one connection per gateway each keeps to its own", () => {
    expect([0, 1, 2].map((i) => gatewayShare([A, B, C], i, 3))).toEqual([[A], [B], [C]]);
  });

  test("fewer connections than gateways share them out; more go round again", () => {
    expect([0, 1].map((i) => gatewayShare([A, B, C], i, 2))).toEqual([[A, C], [B]]);
    expect([0, 1, 2].map((i) => gatewayShare([A, B], i, 3))).toEqual([[A], [B], [A]]);
    expect([0, 1, 2].map((i) => gatewayShare([A], i, 3))).toEqual([[A], [A], [A]]);
  });
});
