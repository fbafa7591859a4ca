// HTTP through the real gateway and agent processes: methods, headers, statuses, framings and
// bodies arrive as the local service sent them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Agent, Gateway, sha256 } from "./harness.ts";
import { patternBytes, startEchoService, startRawService } from "./services.ts";

let gateway: Gateway;
let agent: Agent;
let raw: Agent[] = [];
const service = startEchoService();
const chunked = startRawService(
  "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
  false,
);
const closeDelimited = startRawService(
  "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the socket closes",
  true,
);

beforeAll(async () => {
  gateway = await Gateway.start();
  agent = await Agent.start(gateway, { id: "pi-echo", to: service.port });
  raw = await Promise.all([
    Agent.start(gateway, { id: "pi-chunked", to: `127.0.0.1:${chunked.port}` }),
    Agent.start(gateway, { id: "pi-close", to: `http://127.0.0.1:${closeDelimited.port}` }),
  ]);
});

afterAll(async () => {
  await Promise.all([agent?.stop(), ...raw.map((a) => a.stop())]);
  await gateway?.stop();
  service.stop(true);
  chunked.stop(true);
  closeDelimited.stop(true);
});

type Echo = { method: string; path: string; query: string; headers: [string, string][]; body: string };

describe("requests through the tunnel", () => {
  for (const method of ["GET", "POST", "PUT", "DELETE", "PATCH"]) {
    test(`${method} reaches the service with its path, query and body`, async () => {
      const hasBody = method !== "GET";
      const res = await gateway.fetch("pi-echo", "/things/42?q=a%20b&x=1", {
        method,
        body: hasBody ? `body of ${method}` : undefined,
      });
      expect(res.status).toBe(200);
      const echo = (await res.json()) as Echo;
      expect(echo.method).toBe(method);
      expect(echo.path).toBe("/things/42");
      expect(echo.query).toBe("?q=a%20b&x=1");
      expect(echo.body).toBe(hasBody ? `body of ${method}` : "");
    });
  }

  test("HEAD answers with headers and no body", async () => {
    const res = await gateway.fetch("pi-echo", "/bytes/1000", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("1000");
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  test("the service sees the original host, forwarding headers and a request id", async () => {
    const res = await gateway.fetch("pi-echo", "/", {
      headers: { "x-forwarded-for": "6.6.6.6", "x-request-id": "forged", "x-custom": "v" },
    });
    const echo = (await res.json()) as Echo;
    const headers = new Map(echo.headers);
    expect(headers.get("host")).toBe(`pi-echo.tunnel.test:${gateway.httpPort}`);
    expect(headers.get("x-forwarded-for")).toBe("127.0.0.1");
    expect(headers.get("x-forwarded-host")).toBe(`pi-echo.tunnel.test:${gateway.httpPort}`);
    expect(headers.get("x-forwarded-proto")).toBe("http");
    expect(headers.get("x-custom")).toBe("v");
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(headers.get("x-request-id")).toBe(res.headers.get("x-request-id") as string);
  });

  test("repeated request headers and two Set-Cookie response headers survive", async () => {
    const res = await gateway.fetch("pi-echo", "/cookies");
    expect(res.headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2; Path=/"]);
    expect(res.headers.get("x-multi")).toBe("one, two");

    const req = new Headers();
    req.append("x-rep", "1");
    req.append("x-rep", "2");
    const echo = (await (await gateway.fetch("pi-echo", "/", { headers: req })).json()) as Echo;
    expect(new Map(echo.headers).get("x-rep")).toBe("1, 2");
  });

  for (const status of [201, 204, 304, 404, 500]) {
    test(`status ${status} passes through`, async () => {
      const res = await gateway.fetch("pi-echo", `/status/${status}`);
      expect(res.status).toBe(status);
      const text = await res.text();
      expect(text).toBe(status === 204 || status === 304 ? "" : `status ${status}`);
    });
  }

  test("a chunked local response arrives decoded and whole", async () => {
    const res = await gateway.fetch("pi-chunked", "/");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("hello, world");
  });

  test("a close-delimited local response arrives whole", async () => {
    const res = await gateway.fetch("pi-close", "/");
    expect(await res.text()).toBe("until the socket closes");
  });

  test("an 8 MiB download arrives byte-exact", async () => {
    const size = 8 * 1024 * 1024;
    const res = await gateway.fetch("pi-echo", `/bytes/${size}`);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(body.byteLength).toBe(size);
    expect(await sha256(body)).toBe(await sha256(patternBytes(size)));
  });

  test("an 8 MiB upload arrives byte-exact", async () => {
    const body = patternBytes(8 * 1024 * 1024, 99);
    const res = await gateway.fetch("pi-echo", "/upload", { method: "POST", body });
    expect(await res.json()).toEqual({ length: body.byteLength, sha256: await sha256(body) });
  });

  test("a streamed upload of unknown length arrives byte-exact", async () => {
    const parts = [patternBytes(300_000, 1), patternBytes(5, 2), patternBytes(700_000, 3)];
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = parts.shift();
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const expected = new Uint8Array(1_000_005);
    expected.set(patternBytes(300_000, 1), 0);
    expected.set(patternBytes(5, 2), 300_000);
    expected.set(patternBytes(700_000, 3), 300_005);
    const res = await gateway.fetch("pi-echo", "/upload", { method: "POST", body: stream });
    expect(await res.json()).toEqual({ length: expected.byteLength, sha256: await sha256(expected) });
  });

  test("100 concurrent requests each get their own response", async () => {
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const res = await gateway.fetch("pi-echo", `/n/${i}`, { method: "POST", body: `request ${i}` });
        return (await res.json()) as Echo;
      }),
    );
    results.forEach((echo, i) => {
      expect(echo.path).toBe(`/n/${i}`);
      expect(echo.body).toBe(`request ${i}`);
    });
  });
});
