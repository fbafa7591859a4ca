// The shipped single-file binaries: x64 gateway and agent carry a request end to end, and the
// arm64 agent serves one under qemu's Cortex-A53 (a Raspberry Pi 3/4 stand-in).
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Agent, fromDist, Gateway } from "./harness.ts";
import { startEchoService } from "./services.ts";

const DIST = join(import.meta.dir, "..", "dist");
const built = ["gateway-tunnel-linux-x64", "agent-tunnel-linux-x64", "agent-tunnel-linux-arm64"].every((f) =>
  existsSync(join(DIST, f)),
);
const qemu = Bun.which("qemu-aarch64");
// `make test` builds first; a bare `bun test` without dist/ skips these outside CI only.
const skip = !built && !process.env.CI;

const service = startEchoService();
const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  service.stop(true);
});

describe("compiled binaries", () => {
  test.skipIf(skip)("print their version and help", async () => {
    for (const name of ["gateway-tunnel-linux-x64", "agent-tunnel-linux-x64"]) {
      const version = Bun.spawnSync([join(DIST, name), "--version"]);
      expect(version.exitCode).toBe(0);
      expect(version.stdout.toString()).toMatch(/\d/);
      const help = Bun.spawnSync([join(DIST, name), "--help"]);
      expect(help.exitCode).toBe(0);
      expect(help.stdout.toString()).toContain("USAGE");
    }
  });

  test.skipIf(skip)("the x64 gateway and agent carry a request end to end", async () => {
    const gateway = await Gateway.start({ launcher: fromDist("x64") });
    stops.push(() => gateway.stop());
    const agent = await Agent.start(gateway, { launcher: fromDist("x64"), id: "pi-x64", to: service.port });
    stops.push(() => agent.stop());
    const res = await gateway.fetch("pi-x64", "/via/binary", { method: "POST", body: "compiled" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ path: "/via/binary", body: "compiled" });
  });

  test.skipIf(skip)(
    "the arm64 agent serves a request under qemu (cortex-a53)",
    async () => {
      expect(qemu).not.toBeNull();
      const gateway = await Gateway.start();
      stops.push(() => gateway.stop());
      const launcher = fromDist("arm64", [qemu as string, "-cpu", "cortex-a53", "-L", "/"]);
      const agent = new Agent(gateway, { launcher, id: "pi-arm64", to: service.port });
      stops.push(() => agent.stop());
      // Emulated start-up of a 100 MB runtime takes a while on a busy machine.
      await agent.ready(90_000);
      const res = await gateway.fetch("pi-arm64", "/from/arm64");
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ path: "/from/arm64" });
    },
    120_000,
  );
});
