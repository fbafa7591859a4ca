// The admin listener's token: `Authorization: Bearer <token>` for scripts, or a cookie set by the
// page's login form. The cookie holds an HMAC of the token, not the token; both are compared in
// constant time. Without a configured token (loopback), everything is open to this machine.

const COOKIE = "indranet_admin";

export class AdminAuth {
  readonly #token: string | undefined;
  readonly #cookieValue: string;

  constructor(token: string | undefined) {
    this.#token = token;
    this.#cookieValue = token
      ? new Bun.CryptoHasher("sha256", token).update("indranet admin session").digest("hex")
      : "";
  }

  get required(): boolean {
    return this.#token !== undefined;
  }

  authorized(req: Request): boolean {
    if (this.#token === undefined) return loopbackHost(req.headers.get("host"));
    const bearer = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    if (bearer !== undefined) return same(bearer, this.#token);
    const cookie = cookieValue(req.headers.get("cookie"), COOKIE);
    return cookie !== undefined && same(cookie, this.#cookieValue);
  }

  /** `POST /login` from the page's form: a cookie for the right token, back to the page either way. */
  async login(req: Request): Promise<Response> {
    const form = await req.formData().catch(() => null);
    const given = form?.get("token");
    if (this.#token === undefined || typeof given !== "string" || !same(given, this.#token)) {
      return redirect("/?login=failed");
    }
    const cookie = `${COOKIE}=${this.#cookieValue}; HttpOnly; SameSite=Strict; Path=/`;
    return redirect("/", cookie);
  }

  logout(): Response {
    return redirect("/", `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
  }
}

/**
 * Without a token the listener is on loopback, and only a page of this machine can reach it; a
 * Host that is not a loopback name means a page of another site made the browser ask (DNS
 * rebinding), and is refused.
 */
function loopbackHost(host: string | null): boolean {
  if (host === null) return false;
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d+$/, "");
  return name === "localhost" || name === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

function redirect(location: string, cookie?: string): Response {
  const headers: Record<string, string> = { location };
  if (cookie) headers["set-cookie"] = cookie;
  return new Response(null, { status: 303, headers });
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function cookieValue(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
