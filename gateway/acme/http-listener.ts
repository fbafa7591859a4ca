// The plain-HTTP port of an ACME gateway (--acme-http-port, 80 in production): answers the CA's
// HTTP-01 challenges and sends every other request to the same URL over https.
import type { Server } from "bun";
import { UsageError } from "../../shared/errors.ts";
import { log } from "../../shared/log.ts";
import { sharesPort } from "../reuse-port.ts";

const CHALLENGE_PATH = "/.well-known/acme-challenge/";

/** The key authorizations of the orders in progress, by token: as many as orders at once. */
export class Challenges {
  readonly #byToken = new Map<string, string>();

  add(token: string, keyAuthorization: string): void {
    this.#byToken.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.#byToken.delete(token);
  }

  get(token: string): string | undefined {
    return this.#byToken.get(token);
  }
}

export interface AcmeHttpOptions {
  hostname: string;
  port: number;
  /** The ingress's port, named in redirects unless it is 443. */
  httpsPort: () => number;
  challenges: Challenges;
}

export function startAcmeHttp(options: AcmeHttpOptions): Server<undefined> {
  try {
    return listen(options);
  } catch (error) {
    throw new UsageError(
      `--acme-http-port: cannot listen on ${options.hostname}:${options.port} (${error instanceof Error ? error.message : error}); the CA's HTTP-01 requests arrive there`,
    );
  }
}

function listen(options: AcmeHttpOptions): Server<undefined> {
  return Bun.serve({
    hostname: options.hostname,
    port: options.port,
    reusePort: sharesPort(options.port),
    fetch: (req) => answer(req, options),
    error(error) {
      log.error(`acme http listener: ${error.message}`);
      return new Response("500 internal gateway error\n", { status: 500 });
    },
  });
}

function answer(req: Request, options: AcmeHttpOptions): Response {
  const url = new URL(req.url);
  if (url.pathname.startsWith(CHALLENGE_PATH)) {
    const keyAuthorization = options.challenges.get(url.pathname.slice(CHALLENGE_PATH.length));
    if (keyAuthorization === undefined) return new Response("no such challenge\n", { status: 404 });
    return new Response(keyAuthorization, { headers: { "content-type": "application/octet-stream" } });
  }
  const host = hostName(req.headers.get("host"));
  if (!host) return new Response("400 a Host header is needed to redirect to https\n", { status: 400 });
  const port = options.httpsPort();
  const target = `https://${host}${port === 443 ? "" : `:${port}`}${url.pathname}${url.search}`;
  // 308 keeps the method and body, as a POST to http:// expects.
  return new Response(null, { status: 308, headers: { location: target } });
}

/** The Host header's name without its port, or undefined when it is not a plain host name. */
function hostName(host: string | null): string | undefined {
  if (!host) return undefined;
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d+$/, "");
  return /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)$/.test(name) ? name : undefined;
}
