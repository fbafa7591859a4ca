// The inspector through the admin API: what it keeps of each exchange and how much, the gateway's
// own answers, replay with and without changes, the live feed, the token, and the CLI.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, adminUrl, fromSource, Gateway } from "./harness.ts";
import { startEchoService } from "./services.ts";

const TOKEN = "admin-token-for-tests-only";
const echo = startEchoService();
let gateway: Gateway;
let admin: string;
const agents: Agent[] = [];

interface Summary {
  id: string;
  client_ip: string;
  agent: string;
  path: string;
  status: number;
  error: string;
  request_bytes: number;
  response_bytes: number;
  replay_of: string | null;
}
interface Body {
  size: number;
  captured: number;
  truncated: boolean;
  encoding: string;
  data: string;
}
interface Detail extends Summary {
  request: { headers: [string, string][]; body: Body };
  response: { headers: [string, string][]; body: Body } | null;
}

const authorized = { authorization: `Bearer ${TOKEN}` };

async function list(query = ""): Promise<Summary[]> {
  const res = await fetch(`${admin}/api/requests${query}`, { headers: authorized });
  return ((await res.json()) as { requests: Summary[] }).requests;
}

async function detail(id: string): Promise<Detail> {
  return (await (await fetch(`${admin}/api/requests/${id}`, { headers: authorized })).json()) as Detail;
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "indranet-inspect-"));
  const tokenFile = join(dir, "admin.token");
  writeFileSync(tokenFile, TOKEN);
  chmodSync(tokenFile, 0o600);
  gateway = await Gateway.start({
    args: [
      "--admin",
      "127.0.0.1:0",
      "--admin-token-file",
      tokenFile,
      "--inspect",
      "50",
      "--inspect-body",
      "100",
    ],
    toml: '\n[agents."pi-secret"]\ninspect = false\n',
  });
  admin = await adminUrl(gateway.proc);
  for (const id of ["pi-open", "pi-secret"]) agents.push(await Agent.start(gateway, { id, to: echo.port }));
});

afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.stop()));
  await gateway?.stop();
  echo.stop(true);
});

describe("the inspector", () => {
  test("keeps both heads and the first --inspect-body bytes of both bodies", async () => {
    const body = "x".repeat(300);
    const res = await gateway.fetch("pi-open", "/echo?k=v", {
      method: "POST",
      body,
      headers: { "x-mark": "one" },
    });
    const id = res.headers.get("x-request-id") as string;
    await res.text();
    const got = await detail(id);
    expect(got).toMatchObject({
      agent: "pi-open",
      path: "/echo?k=v",
      status: 200,
      error: "",
      request_bytes: 300,
    });
    expect(got.request.headers).toContainEqual(["x-mark", "one"]);
    expect(got.request.body).toMatchObject({
      size: 300,
      captured: 100,
      truncated: true,
      data: "x".repeat(100),
    });
    expect(got.response?.headers).toContainEqual(["x-echo", "1"]);
    expect(got.response?.body.captured).toBe(100);
    expect(got.response?.body.size).toBeGreaterThan(300);
    const { timing } = got as unknown as { timing: Record<string, number> };
    expect(timing.sent_ms).toBeLessThanOrEqual(timing.head_ms as number);
    expect(timing.head_ms).toBeLessThanOrEqual(timing.last_byte_ms as number);
  });

  test("keeps only heads for an agent with inspect = false", async () => {
    const res = await gateway.fetch("pi-secret", "/echo", { method: "POST", body: "password=hunter2" });
    const id = res.headers.get("x-request-id") as string;
    await res.text();
    const got = await detail(id);
    expect(got.request.headers.length).toBeGreaterThan(0);
    expect(got.request.body).toMatchObject({ size: 16, captured: 0, data: "" });
    expect(got.response?.body.captured).toBe(0);
  });

  test("records the gateway's own answers with their X-Tunnel-Error code", async () => {
    await (await gateway.fetch("nobody", "/missing")).text();
    const [refused] = await list("?status=404&path=/missing");
    expect(refused).toMatchObject({
      agent: "nobody",
      status: 404,
      error: "agent_not_connected",
      client_ip: "127.0.0.1",
    });
    expect((await detail(refused?.id as string)).response?.body.data).toContain("no agent is connected");
  });

  test("replays an exchange, as it was and with changes, and names the original", async () => {
    const res = await gateway.fetch("pi-open", "/echo/original", { method: "POST", body: "first" });
    const id = res.headers.get("x-request-id") as string;
    await res.text();
    const again = await fetch(`${admin}/api/requests/${id}/replay`, { method: "POST", headers: authorized });
    expect(again.status).toBe(201);
    const same = await detail(((await again.json()) as { id: string }).id);
    expect(same).toMatchObject({ path: "/echo/original", replay_of: id, status: 200 });
    expect(same.request.body.data).toBe("first");
    // The echo service's answer begins with what it received (the inspector keeps 100 bytes).
    expect(same.response?.body.data).toStartWith('{"method":"POST","path":"/echo/original"');

    const edited = await fetch(`${admin}/api/requests/${id}/replay`, {
      method: "POST",
      headers: authorized,
      body: JSON.stringify({
        method: "PUT",
        path: "/echo/edited",
        headers: [["x-edited", "yes"]],
        body: "second",
      }),
    });
    const changed = await detail(((await edited.json()) as { id: string }).id);
    expect(changed).toMatchObject({ replay_of: id, status: 200 });
    expect(changed.request.headers).toContainEqual(["x-edited", "yes"]);
    expect(changed.request.body.data).toBe("second");
    expect(changed.response?.body.data).toStartWith('{"method":"PUT","path":"/echo/edited"');
  });

  test("the live feed sends each exchange as it finishes", async () => {
    const feed = await fetch(`${admin}/api/requests/feed`, { headers: authorized });
    const reader = (feed.body as ReadableStream<Uint8Array>).getReader();
    await (await gateway.fetch("pi-open", "/status/202")).text();
    let text = "";
    while (!text.includes("/status/202")) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).toMatch(/event: request\ndata: \{.*"status":202/);
  });

  test("the ring stays at --inspect entries after 10,000 requests", async () => {
    const send = async (n: number) => (await gateway.fetch("pi-open", `/status/200?n=${n}`)).arrayBuffer();
    for (let batch = 0; batch < 10_000; batch += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => send(batch + i)));
    }
    const kept = await list();
    expect(kept.length).toBe(50);
    // The newest 50: every one from the last batch of 100, which finished after all the others.
    for (const entry of kept) expect(Number(entry.path.split("n=")[1])).toBeGreaterThanOrEqual(9_900);
  }, 120_000);

  test("the API asks for the token; the page's login sets a cookie that works instead", async () => {
    expect((await fetch(`${admin}/api/requests`)).status).toBe(401);
    expect((await fetch(`${admin}/api/agents`)).status).toBe(401);
    expect(
      (await fetch(`${admin}/api/requests`, { headers: { authorization: "Bearer wrong-token-wrong" } }))
        .status,
    ).toBe(401);
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    const form = (token: string) =>
      fetch(`${admin}/login`, { method: "POST", body: new URLSearchParams({ token }), redirect: "manual" });
    const refused = await form("wrong-token-wrong");
    expect(refused.headers.get("location")).toBe("/?login=failed");
    expect(refused.headers.get("set-cookie")).toBeNull();
    const accepted = await form(TOKEN);
    const cookie = (accepted.headers.get("set-cookie") ?? "").split(";")[0] as string;
    expect(accepted.headers.get("set-cookie")).toContain("HttpOnly");
    expect(cookie).not.toContain(TOKEN);
    expect((await fetch(`${admin}/api/session`, { headers: { cookie } })).status).toBe(200);
  });

  test("gateway-tunnel requests prints the list, and follows it", async () => {
    await (await gateway.fetch("pi-open", "/status/203")).text();
    const env = { ...process.env, INDRANET_ADMIN_TOKEN: TOKEN };
    const port = new URL(admin).port;
    const once = Bun.spawn(
      [...fromSource("gateway"), "requests", "--admin", `127.0.0.1:${port}`, "--agent", "pi-open"],
      { env, stdout: "pipe" },
    );
    const printed = await new Response(once.stdout).text();
    expect(await once.exited).toBe(0);
    expect(printed).toMatch(/pi-open {2}GET \/status\/203 {2}203 /);
    expect(printed).not.toContain("pi-secret");

    const follow = Bun.spawn(
      [...fromSource("gateway"), "requests", "--admin", `127.0.0.1:${port}`, "--follow"],
      { env, stdout: "pipe" },
    );
    await Bun.sleep(500);
    await (await gateway.fetch("pi-open", "/status/204")).arrayBuffer();
    const reader = follow.stdout.getReader();
    let out = "";
    while (!out.includes("/status/204")) out += new TextDecoder().decode((await reader.read()).value);
    follow.kill();
    expect(out).toMatch(/GET \/status\/204 {2}204 /);
  });
});

test("an admin listener off loopback refuses to start without a token", async () => {
  const refused = new Gateway({ args: ["--admin", "0.0.0.0:0"] });
  expect(await refused.proc.exited()).toBe(2);
  expect(refused.proc.output.text).toContain("--admin 0.0.0.0:0 is not loopback");
});
