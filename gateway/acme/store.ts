// The ACME account and the certificates on disk, under --state-dir, so that a restart serves what
// it had instead of ordering again (CAs limit how many certificates a name may get per week).
// One directory per CA, so that staging and production never mix. Files are mode 600.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { fsReason } from "../../shared/config.ts";
import { UsageError } from "../../shared/errors.ts";
import { log } from "../../shared/log.ts";
import { pairProblem } from "../certificates.ts";
import type { TlsPair } from "../tls.ts";

export class AcmeStore {
  readonly #dir: string;

  constructor(stateDir: string, directoryUrl: string) {
    this.#dir = join(stateDir, "acme", caFolder(directoryUrl));
  }

  get path(): string {
    return this.#dir;
  }

  /** Creates the folders now, so that a state dir that cannot be written stops the start. */
  prepare(): void {
    try {
      mkdirSync(join(this.#dir, "certificates"), { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new UsageError(`--state-dir: cannot create ${this.#dir}: ${fsReason(error)}`);
    }
  }

  readAccountKey(): string | undefined {
    return readIfPresent(join(this.#dir, "account.key"));
  }

  writeAccountKey(key: string): void {
    writePrivate(join(this.#dir, "account.key"), key);
  }

  /** Every stored certificate by its name; a pair missing half, or not matching, is skipped. */
  readCertificates(): Map<string, TlsPair> {
    const found = new Map<string, TlsPair>();
    const folder = join(this.#dir, "certificates");
    for (const file of readdirSync(folder)) {
      if (!file.endsWith(".crt")) continue;
      const name = file.slice(0, -".crt".length);
      const cert = readIfPresent(join(folder, file));
      const key = readIfPresent(join(folder, `${name}.key`));
      if (!cert || !key) continue;
      const problem = pairProblem({ cert, key });
      if (problem) log.warn(`acme: ${join(folder, file)} is not used: ${problem}; it will be ordered again`);
      else found.set(name, { cert, key });
    }
    return found;
  }

  /** The key first, so that a certificate on disk always has its key beside it. */
  writeCertificate(name: string, pair: TlsPair): void {
    const folder = join(this.#dir, "certificates");
    writePrivate(join(folder, `${name}.key`), pair.key);
    writePrivate(join(folder, `${name}.crt`), pair.cert);
  }
}

/** `acme-v02.api.letsencrypt.org-directory` for Let's Encrypt's production directory. */
function caFolder(directoryUrl: string): string {
  const url = new URL(directoryUrl);
  return `${url.host}${url.pathname}`.replace(/[^a-zA-Z0-9.-]+/g, "-").replace(/-+$/, "");
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * Written to a new file of its own (mode 600 from the start, whatever a crash left behind), synced,
 * and renamed over the old one, so a crash never leaves half a key.
 */
function writePrivate(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(temporary, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
}
