// The admin listener both binaries can run: /healthz for load balancers and supervisors,
// /metrics for Prometheus, plus whatever JSON routes the binary adds. Bound to loopback by
// default, since it answers without authentication.
import type { Server } from "bun";
import { type Kind, textKind } from "./config.ts";
import { log } from "./log.ts";
import { METRICS_CONTENT_TYPE, type MetricRegistry } from "./metrics.ts";

export interface AdminAddress {
  hostname: string;
  port: number;
  /** False for the built-in default: a busy default port is a warning, a chosen one an error. */
  explicit: boolean;
}

/** Loopback only; 9180 stays clear of Prometheus (9090) and its exporters' usual ports. */
export const DEFAULT_ADMIN: AdminAddress = { hostname: "127.0.0.1", port: 9180, explicit: false };

/** `HOST:PORT`, `[IPv6]:PORT`, `PORT` (on 127.0.0.1) or `off` for no admin listener. */
export const adminAddressKind: Kind<AdminAddress | "off"> = textKind(
  "HOST:PORT, PORT (on 127.0.0.1) or off",
  parseAdminAddress,
);

export function parseAdminAddress(text: string): AdminAddress | "off" | undefined {
  if (text === "off") return "off";
  const match = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):)?(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { hostname: match[1] ?? match[2] ?? DEFAULT_ADMIN.hostname, port, explicit: true };
}

export function adminUrl(hostname: string, port: number): string {
  return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

export interface AdminOptions {
  address: AdminAddress;
  /** 200 while serving, 503 while draining, so a balancer stops sending traffic first. */
  healthy: () => boolean;
  metrics: MetricRegistry;
  /** Extra GET routes by exact path, answered with JSON. */
  json?: Record<string, () => unknown>;
  /**
   * Asked before the JSON routes (after /healthz and /metrics, which stay open to balancers and
   * Prometheus): an answer, or undefined to go on. The gateway's inspector API and its token.
   */
  handle?: (req: Request, path: string) => Response | undefined | Promise<Response | undefined>;
  /** Static routes Bun serves itself, such as a bundled HTML page. */
  routes?: Record<string, Bun.HTMLBundle>;
  /**
   * Let a second process listen on the same address while this one drains (a gateway restart);
   * never for port 0, where Linux could hand two processes the same "free" port.
   */
  reusePort?: boolean;
}

/** Starts the listener; null when the default address is taken (logged, not fatal). */
export function startAdmin(options: AdminOptions): Server<undefined> | null {
  const { address } = options;
  let server: Server<undefined>;
  try {
    server = Bun.serve({
      hostname: address.hostname,
      port: address.port,
      reusePort: options.reusePort === true && address.port !== 0,
      ...(options.routes ? { routes: options.routes } : {}),
      // A bundled page is served as built, never with Bun's live-reload script.
      development: false,
      fetch: (req) => answer(req, options),
    });
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    const where = adminUrl(address.hostname, address.port);
    if (address.explicit) throw new Error(`--admin: cannot listen on ${where}: ${why}`);
    log.warn(`admin listener not started, ${where} is not available (${why}); choose one with --admin`);
    return null;
  }
  log.info(`admin listening on ${adminUrl(address.hostname, server.port ?? address.port)}`);
  return server;
}

async function answer(req: Request, options: AdminOptions): Promise<Response> {
  const path = new URL(req.url).pathname;
  if (path !== "/healthz" && path !== "/metrics") {
    const handled = await options.handle?.(req, path);
    if (handled) return handled;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  if (path === "/healthz") {
    return options.healthy()
      ? new Response("ok\n")
      : new Response("draining\n", { status: 503, headers: { "retry-after": "1" } });
  }
  if (path === "/metrics") {
    return new Response(options.metrics.render(), { headers: { "content-type": METRICS_CONTENT_TYPE } });
  }
  const route = options.json?.[path];
  if (route) return Response.json(await route());
  return new Response("not found\n", { status: 404 });
}
