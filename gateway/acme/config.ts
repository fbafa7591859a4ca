// The [acme] settings: who the CA's account belongs to, which CA, and which names besides the
// agents' own get a certificate. Absent, the gateway serves TLS only from --tls-cert, if at all.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { isValidAgentId } from "../../shared/auth.ts";
import { type Env, type Flags, fsReason, pick, type Setting } from "../../shared/config.ts";
import { UsageError } from "../../shared/errors.ts";

export interface AcmeConfig {
  /** The account's contact; the CA writes there about expiring certificates and policy changes. */
  email: string;
  /** The CA's directory URL. */
  directory: string;
  /** PEM of a private CA's root, trusted for the ACME API only (`ca_file`). */
  ca?: string;
  /** Names issued at start-up, besides `<domain>`, `<id>.<domain>` and the [[hosts]] names. */
  names: string[];
}

/** The [acme] table as the TOML file gives it, `ca_file` still relative to the file. */
export type AcmeFileTable = Record<string, unknown>;

export const LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory";
const DIRECTORY_NAMES: Record<string, string> = {
  letsencrypt: LETS_ENCRYPT,
  "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
};

const TABLE_KEYS = ["email", "directory", "ca_file", "names"];

/**
 * ACME from --acme-email (INDRANET_ACME_EMAIL) and the file's [acme] table, or undefined when
 * neither names an email address.
 */
export function resolveAcme(
  flags: Flags,
  env: Env,
  table: AcmeFileTable | undefined,
  configPath: string,
  domain: string,
): AcmeConfig | undefined {
  const where = `${configPath}: acme`;
  const unknown = Object.keys(table ?? {}).find((key) => !TABLE_KEYS.includes(key));
  if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${TABLE_KEYS.join(", ")})`);
  const email =
    pick(flags, env, "acme-email", "INDRANET_ACME_EMAIL") ?? fileText(table?.email, `${where}.email`);
  if (!email) {
    if (table) throw new UsageError(`${where}: email is required (the CA's account contact)`);
    return undefined;
  }
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email.text))
    throw new UsageError(`${email.name}: '${email.text}' is not an email address`);
  if (!domain.includes(".")) {
    throw new UsageError(
      `${email.name} asks for certificates, but --domain is '${domain}': set it to the public name agents are reached under, such as tunnel.example.org`,
    );
  }
  const directory = fileText(table?.directory, `${where}.directory`);
  const caFile = fileText(table?.ca_file, `${where}.ca_file`);
  const ca = caFile ? readCa(resolve(dirname(configPath), caFile.text), caFile.name) : undefined;
  return {
    email: email.text,
    directory: directory ? parseDirectory(directory) : LETS_ENCRYPT,
    ...(ca ? { ca } : {}),
    names: readNames(table?.names, `${where}.names`),
  };
}

function fileText(value: unknown, name: string): Setting | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") throw new UsageError(`${name} must be a non-empty string`);
  return { text: value, name };
}

function parseDirectory(setting: Setting): string {
  const named = DIRECTORY_NAMES[setting.text];
  if (named) return named;
  let url: URL | undefined;
  try {
    url = new URL(setting.text);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== "https:") {
    throw new UsageError(
      `${setting.name}: expected the CA's https:// directory URL, letsencrypt or letsencrypt-staging, got '${setting.text}'`,
    );
  }
  return url.href;
}

function readCa(path: string, name: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`${name}: cannot read ${path}: ${fsReason(error)}`);
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----"))
    throw new UsageError(`${name}: ${path} holds no PEM certificate (BEGIN CERTIFICATE)`);
  return text;
}

/** Exact DNS names: a wildcard needs the DNS-01 challenge, which this gateway does not answer. */
function readNames(value: unknown, name: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((n) => typeof n === "string"))
    throw new UsageError(`${name} must be an array of host names, e.g. ["tunnel.example.org"]`);
  return value.map((text) => {
    const host = text.toLowerCase().replace(/\.$/, "");
    if (host.startsWith("*.")) {
      throw new UsageError(
        `${name}: '${text}' is a wildcard, which needs a DNS-01 challenge; get that certificate elsewhere and pass it as --tls-cert`,
      );
    }
    if (!host.includes(".") || !host.split(".").every(isValidAgentId))
      throw new UsageError(`${name}: '${text}' is not a DNS name such as tunnel.example.org`);
    return host;
  });
}
