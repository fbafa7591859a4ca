// A captured body as something to read: JSON pretty-printed, text as text, anything else as a
// hex dump, with its size and a note when only its first bytes were kept.
import type { Body, HeaderList } from "./api.ts";
import { h } from "./dom.ts";
import { bytes } from "./format.ts";

/** A hex dump longer than this is cut: it is for a glance. 4 KiB keeps offsets to 4 digits. */
const HEX_DUMP_LIMIT = 4096;

export function bodyView(body: Body, headers: HeaderList): HTMLElement {
  if (body.size === 0) return h("p", { class: "muted" }, "No body.");
  const kind = body.encoding === "base64" ? "binary" : isJson(headers) ? "JSON" : "text";
  return h(
    "div",
    { class: "body" },
    h(
      "p",
      { class: "muted" },
      `${kind}, ${bytes(body.size)}`,
      body.truncated ? ` — only the first ${bytes(body.captured)} were kept` : "",
    ),
    h("pre", { class: `body-${kind.toLowerCase()}` }, render(body, kind)),
  );
}

function render(body: Body, kind: string): string {
  if (kind === "binary") return hexDump(decodeBase64(body.data));
  if (kind === "JSON" && !body.truncated) return prettyJson(body.data);
  return body.data;
}

function isJson(headers: HeaderList): boolean {
  const type = headers.find(([name]) => name.toLowerCase() === "content-type")?.[1] ?? "";
  return /[/+]json\b/i.test(type);
}

function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function decodeBase64(data: string): Uint8Array {
  return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
}

/** 16 bytes a line: offset, hex, and the printable ASCII beside it. */
function hexDump(data: Uint8Array): string {
  const lines: string[] = [];
  const shown = data.subarray(0, HEX_DUMP_LIMIT);
  for (let offset = 0; offset < shown.length; offset += 16) {
    const row = [...shown.subarray(offset, offset + 16)];
    const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = row.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(4, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (data.length > shown.length) lines.push(`… ${bytes(data.length - shown.length)} more`);
  return lines.join("\n");
}
