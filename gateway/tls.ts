// The gateway's certificate and key: read from PEM files at start-up, and again on demand so
// that a renewed certificate can replace the old one without restarting.
import { readFileSync, statSync } from "node:fs";
import { exposedFileWarning, fsReason } from "../shared/config.ts";
import { UsageError } from "../shared/errors.ts";
import { pairProblem } from "./certificates.ts";

/** Where the PEM files are, and the name to blame for each (a flag, a variable or a file key). */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  certName: string;
  keyName: string;
}

/** What Bun.serve takes as `tls`; both ports serve the same pair. */
export interface TlsPair {
  cert: string;
  key: string;
}

/** Reads and checks both files; every error names the setting and the file. */
export function readTlsPair(files: TlsFiles): { pair: TlsPair; warning?: string } {
  const cert = readPem(files.certFile, files.certName);
  if (!cert.text.includes("-----BEGIN CERTIFICATE-----")) {
    throw new UsageError(`${files.certName}: ${files.certFile} holds no PEM certificate (BEGIN CERTIFICATE)`);
  }
  const key = readPem(files.keyFile, files.keyName);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.text)) {
    throw new UsageError(`${files.keyName}: ${files.keyFile} holds no PEM private key (BEGIN PRIVATE KEY)`);
  }
  // Bun refuses a whole listener for one mismatched pair: a half-copied renewal is caught here.
  const problem = pairProblem({ cert: cert.text, key: key.text });
  if (problem) throw new UsageError(`${files.certName} and ${files.keyName}: ${problem}`);
  const warning = exposedFileWarning(files.keyFile, key.mode, `${files.keyName} (the TLS private key)`);
  return { pair: { cert: cert.text, key: key.text }, ...(warning ? { warning } : {}) };
}

function readPem(path: string, name: string): { text: string; mode: number } {
  try {
    return { mode: statSync(path).mode, text: readFileSync(path, "utf8") };
  } catch (error) {
    throw new UsageError(`${name}: cannot read ${path}: ${fsReason(error)}`);
  }
}
