// `make demo`: a gateway, an agent and a small web service on loopback, wired with throwaway
// credentials, so a newcomer sees a page through the tunnel in one command. Ctrl-C stops all.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const HTTP_PORT = Number(process.env.DEMO_HTTP_PORT ?? 8082);
const WS_PORT = Number(process.env.DEMO_WS_PORT ?? 8080);
const AGENT_ID = "demo";
const DOMAIN = "localhost";

const service: Bun.Server<undefined> = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const url = new URL(req.url);
    const page = `<!doctype html><title>indraNet demo</title>
<h1>Hello from the device</h1>
<p>This page was served by a local service on 127.0.0.1:${service.port} and reached you through
the indraNet tunnel.</p>
<ul><li>path: ${Bun.escapeHTML(url.pathname)}</li>
<li>request id: ${Bun.escapeHTML(req.headers.get("x-request-id") ?? "-")}</li>
<li>forwarded for: ${Bun.escapeHTML(req.headers.get("x-forwarded-for") ?? "-")}</li></ul>\n`;
    return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
  },
});

const dir = mkdtempSync(join(tmpdir(), "indranet-demo-"));
const token = "demo-token";
const secret = randomBytes(24).toString("hex");
const configPath = join(dir, "gateway.toml");
writeFileSync(
  configPath,
  `[[tokens]]\ntoken = "${token}"\nsecret = "${secret}"\nagents = ["${AGENT_ID}"]\n`,
  {
    mode: 0o600,
  },
);

const gateway = Bun.spawn(
  [
    process.execPath,
    join(ROOT, "gateway/main.ts"),
    "serve",
    "--config",
    configPath,
    "--domain",
    DOMAIN,
    "--bind",
    "127.0.0.1",
    "--http-port",
    String(HTTP_PORT),
    "--ws-port",
    String(WS_PORT),
  ],
  { stdout: "inherit", stderr: "inherit", stdin: "ignore" },
);

await waitForPort(WS_PORT, gateway);

const agent = Bun.spawn(
  [
    process.execPath,
    join(ROOT, "agent/main.ts"),
    "connect",
    "--gateway",
    `ws://127.0.0.1:${WS_PORT}`,
    "--token",
    token,
    "--id",
    AGENT_ID,
    "--to",
    `127.0.0.1:${service.port}`,
  ],
  // The secret goes through the environment so it never shows in `ps`.
  { stdout: "inherit", stderr: "inherit", stdin: "ignore", env: { ...process.env, INDRANET_SECRET: secret } },
);

await waitForRoute();
console.log(`
  The tunnel is up. Try it:

    curl http://${AGENT_ID}.${DOMAIN}:${HTTP_PORT}/
    curl -H 'Host: ${AGENT_ID}.${DOMAIN}' http://127.0.0.1:${HTTP_PORT}/

  Watch the requests go by, and replay them, in the inspector: http://127.0.0.1:9180/
  (or the address of the "admin listening on" line above, if 9180 was taken).

  Press Ctrl-C to stop the gateway, the agent and the demo service.
`);

let stopping = false;
async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const child of [agent, gateway]) if (child.exitCode === null) child.kill("SIGTERM");
    await Promise.race([Promise.all([agent.exited, gateway.exited]), Bun.sleep(5_000)]);
    for (const child of [agent, gateway]) if (child.exitCode === null) child.kill("SIGKILL");
    service.stop(true);
    rmSync(dir, { recursive: true, force: true });
    console.log("demo stopped");
  }
  process.exit(code);
}

process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));
void gateway.exited.then((code) => {
  if (!stopping) {
    console.error(
      `gateway exited (${code}); is port ${HTTP_PORT} or ${WS_PORT} in use? Set DEMO_HTTP_PORT/DEMO_WS_PORT.`,
    );
    void stop(1);
  }
});
void agent.exited.then((code) => {
  if (!stopping) {
    console.error(`agent exited (${code})`);
    void stop(1);
  }
});

async function waitForPort(port: number, child: { exitCode: number | null }): Promise<void> {
  for (let i = 0; i < 100 && child.exitCode === null; i++) {
    try {
      const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      socket.end();
      return;
    } catch {
      await Bun.sleep(100);
    }
  }
}

async function waitForRoute(): Promise<void> {
  for (let i = 0; i < 150; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${HTTP_PORT}/`, {
        headers: { host: `${AGENT_ID}.${DOMAIN}` },
      });
      if (res.ok) return;
    } catch {
      // the gateway is still starting
    }
    await Bun.sleep(100);
  }
  console.error("the tunnel did not come up within 15 s");
  await stop(1);
}
