// HTTP Basic authentication against password hashes as Bun.password.hash writes them (argon2id,
// or bcrypt). Such a hash is slow on purpose, so a verified Authorization header is remembered
// for a while: a browser sends the same header with every request, and only the first costs a hash.

export interface BasicAuthUser {
  user: string;
  /** `$argon2id$…` or `$2b$…`. */
  hash: string;
}

/** How long a verified header passes without hashing again; a removed user loses access on reload. */
export const VERIFIED_TTL_MS = 5 * 60_000;

/** Verified headers remembered per agent table; beyond it the oldest is forgotten. */
export const MAX_VERIFIED = 1_000;

/**
 * Password checks running at once in the whole gateway: argon2id as Bun writes it takes 64 MiB
 * and tens of milliseconds of a core each, so a flood of wrong passwords is bounded here.
 */
export const MAX_CONCURRENT_CHECKS = 4;

// Bun.password.hash("x") with Bun's defaults: an unknown user costs a verification like a known
// one, so the time of a refusal does not tell which user names exist.
const UNKNOWN_USER_HASH =
  "$argon2id$v=19$m=65536,t=2,p=1$3Mx0bIdZ9gVdwRTwzMD3/XqynOQV8Bv4xDW3kEhQitA$jX9y9C4+wAo3IRJ63y7XUbmLzz8LKSN9uedb1gbLDUc";

/** Whether `hash` is in a format Bun.password.verify reads. */
export function isPasswordHash(hash: string): boolean {
  return (
    /^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/.test(hash) ||
    /^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)
  );
}

export type BasicAuthResult = "ok" | "denied" | "busy";

let checking = 0;

export class BasicAuth {
  readonly #hashes: Map<string, string>;
  /** Authorization header value → when it verified. */
  readonly #verified = new Map<string, number>();

  constructor(users: readonly BasicAuthUser[]) {
    this.#hashes = new Map(users.map(({ user, hash }) => [user, hash]));
  }

  /** Settles at once for a header verified lately or one that is not Basic credentials at all. */
  check(header: string | null, nowMs: number): BasicAuthResult | Promise<BasicAuthResult> {
    if (header === null) return "denied";
    const verifiedAt = this.#verified.get(header);
    if (verifiedAt !== undefined) {
      if (nowMs - verifiedAt < VERIFIED_TTL_MS) return "ok";
      this.#verified.delete(header);
    }
    const credentials = decodeBasic(header);
    if (!credentials) return "denied";
    if (checking >= MAX_CONCURRENT_CHECKS) return "busy";
    return this.#verify(header, credentials, nowMs);
  }

  async #verify(header: string, { user, password }: Credentials, nowMs: number): Promise<BasicAuthResult> {
    const hash = this.#hashes.get(user);
    checking++;
    let ok: boolean;
    try {
      ok = await Bun.password.verify(password, hash ?? UNKNOWN_USER_HASH);
    } catch {
      ok = false;
    } finally {
      checking--;
    }
    if (!ok || hash === undefined) return "denied";
    if (this.#verified.size >= MAX_VERIFIED)
      this.#verified.delete(this.#verified.keys().next().value as string);
    this.#verified.set(header, nowMs);
    return "ok";
  }
}

interface Credentials {
  user: string;
  password: string;
}

/** `Basic base64(user:password)`, the scheme in any letter case (RFC 7617). */
function decodeBasic(header: string): Credentials | undefined {
  const match = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
