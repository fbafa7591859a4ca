// For config tests: TOML files in a throwaway directory, each readable by its owner only and
// holding one token after the text under test, so the gateway's config loads.
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const TOKEN = '[[tokens]]\ntoken = "tok"\nsecret = "0123456789abcdef-secret"\nagents = ["pi-*"]\n';

/** A function that writes `text` and a token to a new file and returns its path. */
export function configFiles(): (text: string) => string {
  const dir = mkdtempSync(join(tmpdir(), "indranet-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  return (text) => {
    const path = join(dir, `gateway-${files++}.toml`);
    writeFileSync(path, `${text}\n${TOKEN}`, { mode: 0o600 });
    return path;
  };
}
