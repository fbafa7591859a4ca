// The inspector page in a real browser (Debian's chromium, driven by playwright-core) against a
// real gateway, agent and service: new requests appear live, the detail shows both sides, a
// replay reaches the service again (as it was, or edited), and a token puts the page behind a
// login form. INSPECTOR_SCREENSHOT=1 also writes docs/inspector.png.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { Agent, adminUrl, DOMAIN, eventually, Gateway } from "./harness.ts";

const CHROMIUM = process.env.CHROMIUM ?? Bun.which("chromium");
const ADMIN_TOKEN = "inspector-page-admin-token";
/** The feed, not a poll, puts a finished request on the page: well within this. */
const LIVE_WITHIN_MS = 1_000;
/** Each test drives a browser on a busy 2-core machine: give it room, well below the run's minute. */
const TEST_TIMEOUT_MS = 20_000;
setDefaultTimeout(TEST_TIMEOUT_MS);
/** Wide enough for the list and the detail side by side, as the page is laid out for. */
const VIEWPORT = { width: 1280, height: 800 };

interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** The local service: records every request it receives, answers JSON with a running count. */
function startRecordingService() {
  const seen: Seen[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      seen.push({
        method: req.method,
        path: url.pathname + url.search,
        headers: Object.fromEntries(req.headers),
        body: await req.text(),
      });
      return Response.json(
        { seen: seen.length, path: url.pathname },
        { headers: { "x-service": "recorder" } },
      );
    },
  });
  return { port: server.port as number, seen, stop: () => server.stop(true) };
}

const service = startRecordingService();
const stops: (() => Promise<void> | void)[] = [service.stop];
let browser: Browser;
let gateway: Gateway;
let admin: string;

async function startTunnel(agentId: string, env: Record<string, string> = {}) {
  const gw = await Gateway.start({ args: ["--admin", "127.0.0.1:0"], env });
  stops.push(() => gw.stop());
  const url = await adminUrl(gw.proc);
  const agent = await Agent.start(gw, { id: agentId, to: service.port });
  stops.push(() => agent.stop());
  return { gateway: gw, admin: url };
}

beforeAll(async () => {
  if (!CHROMIUM) throw new Error("chromium is missing: run scripts/install-test-deps.sh");
  browser = await chromium.launch({ executablePath: CHROMIUM });
  stops.push(() => browser.close());
  ({ gateway, admin } = await startTunnel("pi-page"));
});

afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A request the way a user makes one from a shell: curl, through the gateway's ingress. */
async function curl(
  gw: Gateway,
  agentId: string,
  path: string,
  send: { headers?: string[]; data?: string } = {},
) {
  const args = ["-sS", "-o", "/dev/null", "-H", `host: ${agentId}.${DOMAIN}:${gw.httpPort}`];
  for (const header of send.headers ?? []) args.push("-H", header);
  if (send.data !== undefined) args.push("--data", send.data);
  const proc = Bun.spawn(["curl", ...args, `http://127.0.0.1:${gw.httpPort}${path}`]);
  expect(await proc.exited).toBe(0);
}

/** A fresh page on the inspector, once it follows the live feed. */
async function openInspector(url = admin): Promise<Page> {
  const page = await browser.newPage({ viewport: VIEWPORT });
  await page.goto(url);
  await page.locator("#feed-state", { hasText: "live" }).waitFor();
  return page;
}

const row = (page: Page, path: string) => page.locator("#request-rows tr", { hasText: path });
const detail = (page: Page) => page.locator("#detail");

function recorded(path: string): Seen[] {
  return service.seen.filter((s) => s.path === path);
}

describe("the inspector page", () => {
  test("a request made with curl appears on the open page within a second", async () => {
    const page = await openInspector();
    await curl(gateway, "pi-page", "/hello?from=curl");
    await row(page, "/hello?from=curl").waitFor({ timeout: LIVE_WITHIN_MS });
    await expect(row(page, "/hello?from=curl").textContent()).resolves.toContain("200");
    await expect(page.locator("#agent-rows").textContent()).resolves.toContain("pi-page");
    await page.close();
  });

  test("the detail shows the request and response headers and bodies", async () => {
    const page = await openInspector();
    await curl(gateway, "pi-page", "/readings", {
      headers: ["content-type: application/json", "x-trace: page-test"],
      data: '{"sensor":"t1","value":21.5}',
    });
    await row(page, "/readings").click();
    await expect(detail(page).locator("h2").textContent()).resolves.toContain("POST /readings");
    const headers = detail(page).locator("table.headers");
    await expect(headers.first().textContent()).resolves.toContain("page-test");
    await expect(headers.last().textContent()).resolves.toContain("recorder");
    // Both bodies are JSON, so both are shown pretty-printed.
    await expect(detail(page).locator("pre").first().textContent()).resolves.toContain('"sensor": "t1"');
    await expect(detail(page).locator("pre").last().textContent()).resolves.toContain('"path": "/readings"');

    await page.getByLabel("Find in headers").fill("x-trace");
    await expect(detail(page).locator("table.headers tr:visible").count()).resolves.toBe(1);
    await page.close();
  });

  test("Replay sends the request to the service again", async () => {
    const page = await openInspector();
    await curl(gateway, "pi-page", "/replay-me", { headers: ["x-trace: original"], data: "once" });
    await row(page, "/replay-me").click();
    const original = await page.locator("#request-rows tr.selected").getAttribute("data-id");
    expect(recorded("/replay-me")).toHaveLength(1);

    await detail(page).getByRole("button", { name: "Replay", exact: true }).click();
    await eventually(async () => expect(recorded("/replay-me")).toHaveLength(2));
    expect(recorded("/replay-me")[1]).toMatchObject({ method: "POST", body: "once" });
    expect(recorded("/replay-me")[1]?.headers["x-trace"]).toBe("original");
    // The page selects the replay, which names what it repeats.
    await detail(page)
      .locator(".facts", { hasText: `Replay of${original}` })
      .waitFor();
    await page.close();
  });

  test("Edit & replay sends what was edited", async () => {
    const page = await openInspector();
    await curl(gateway, "pi-page", "/edit-me", { headers: ["x-trace: original"] });
    await row(page, "/edit-me").click();

    await detail(page).getByRole("button", { name: "Edit & replay" }).click();
    const form = page.getByRole("form", { name: "Edit and replay" });
    await form.getByLabel("Path").fill("/edited?by=page");
    const headers = form.getByLabel("Headers");
    await headers.fill((await headers.inputValue()).replace("x-trace: original", "x-trace: edited"));
    await form.getByRole("button", { name: "Send" }).click();

    await eventually(async () => expect(recorded("/edited?by=page")).toHaveLength(1));
    expect(recorded("/edited?by=page")[0]?.headers["x-trace"]).toBe("edited");
    expect(recorded("/edit-me")).toHaveLength(1);
    await detail(page).locator("h2", { hasText: "GET /edited?by=page" }).waitFor();
    await page.close();
  });

  test.if(process.env.INSPECTOR_SCREENSHOT === "1")("a screenshot for the docs", async () => {
    const page = await openInspector();
    await curl(gateway, "pi-page", "/api/status?verbose=1");
    await curl(gateway, "absent-agent", "/nowhere");
    await row(page, "/readings").click();
    await page.locator("#detail h2").waitFor();
    await page.screenshot({ path: join(import.meta.dir, "..", "docs", "inspector.png") });
    await page.close();
  });
});

describe("the inspector page with an admin token", () => {
  test("asks for the token, refuses a wrong one and shows the list for the right one", async () => {
    const tunnel = await startTunnel("pi-locked", { INDRANET_ADMIN_TOKEN: ADMIN_TOKEN });
    await curl(tunnel.gateway, "pi-locked", "/before-login");
    const page = await browser.newPage({ viewport: VIEWPORT });
    await page.goto(tunnel.admin);
    const token = page.getByLabel("Admin token");
    await token.waitFor();
    expect(await page.locator("#inspector").isHidden()).toBe(true);

    await token.fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByText("That token was refused.").waitFor();
    expect(new URL(page.url()).searchParams.get("login")).toBe("failed");

    await token.fill(ADMIN_TOKEN);
    await page.getByRole("button", { name: "Log in" }).click();
    await row(page, "/before-login").waitFor();
    expect(await page.getByRole("button", { name: "Log out" }).isVisible()).toBe(true);
    await page.close();
  });
});
