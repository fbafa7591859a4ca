// For tests of the gateway's config: TOML files written to a folder removed after the file's tests.
import { afterAll } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A token table any config file can start with. */
export const TOKEN = `[[tokens]]\ntoken = "tok"\nsecret = "0123456789abcdef-secret"\nagents = ["pi-*"]\n`;

/** A fresh folder, and a function writing each text to a new owner-only file in it. */
export function configFiles(prefix: string): { dir: string; file: (text: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  const file = (text: string) => {
    const path = join(dir, `${files++}.toml`);
    writeFileSync(path, text);
    chmodSync(path, 0o600);
    return path;
  };
  return { dir, file };
}
