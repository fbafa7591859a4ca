import { describe, expect, test } from "bun:test";
import { usageError } from "../../shared/usage-error.testing.ts";
import { readTcpTables } from "./config.ts";

const read = (value: unknown) => readTcpTables("gw.toml", value);

describe("[[tcp]]", () => {
  test("maps each public port to an agent's service", () => {
    expect(
      read([
        { port: 2222, agent: "pi-kitchen", service: "ssh" },
        { port: 0, agent: "pi-a", service: "vnc" },
        { port: 0, agent: "pi-b", service: "vnc" },
      ]),
    ).toEqual([
      { port: 2222, agent: "pi-kitchen", service: "ssh" },
      { port: 0, agent: "pi-a", service: "vnc" },
      { port: 0, agent: "pi-b", service: "vnc" },
    ]);
  });

  test("names the file and the entry that is wrong", () => {
    expect(usageError(() => read({ port: 1 }))).toBe(
      "gw.toml: tcp must be an array of tables, written [[tcp]]",
    );
    expect(usageError(() => read([{ port: 70000, agent: "pi-a", service: "ssh" }]))).toBe(
      "gw.toml: tcp[0].port must be a port from 1 to 65535 (0 picks a free one)",
    );
    expect(usageError(() => read([{ port: 22, agent: "Pi_A", service: "ssh" }]))).toBe(
      "gw.toml: tcp[0].agent must be an agent id such as pi-kitchen",
    );
    expect(usageError(() => read([{ port: 22, agent: "pi-a", service: "" }]))).toStartWith(
      "gw.toml: tcp[0].service must be",
    );
    expect(usageError(() => read([{ port: 22, agent: "pi-a", service: "ssh", host: "x" }]))).toStartWith(
      "gw.toml: tcp[0]: unknown key 'host'",
    );
    expect(
      usageError(() =>
        read([
          { port: 22, agent: "pi-a", service: "ssh" },
          { port: 22, agent: "pi-b", service: "ssh" },
        ]),
      ),
    ).toBe("gw.toml: tcp[1].port repeats tcp[0].port: each port carries one service");
  });
});
