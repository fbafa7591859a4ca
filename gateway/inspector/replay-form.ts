// Edit & replay: the captured request as a form (method, path, headers as "Name: value" lines,
// body), turned back into the changes the replay API takes.
import type { Detail, HeaderList, ReplayChanges } from "./api.ts";
import { h } from "./dom.ts";

export function replayForm(detail: Detail, send: (changes: ReplayChanges) => void): HTMLFormElement {
  const { body } = detail.request;
  const editable = body.encoding === "utf8" && !body.truncated;
  const original = editable ? body.data : "";
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "replay-form", "aria-label": "Edit and replay" },
    h(
      "label",
      {},
      "Method ",
      h("input", { name: "method", value: detail.method, required: true, size: "8" }),
    ),
    h("label", {}, "Path ", h("input", { name: "path", value: detail.path, required: true })),
    h(
      "label",
      { class: "wide" },
      "Headers, one “Name: value” a line",
      h("textarea", { name: "headers", rows: "6" }),
    ),
    h(
      "label",
      { class: "wide" },
      editable
        ? "Body"
        : `Body (the captured ${body.encoding === "utf8" ? "part" : "binary body"} is sent unless you type one)`,
      h("textarea", { name: "body", rows: "6" }),
    ),
    error,
    h("button", { type: "submit" }, "Send"),
  );
  field(form, "headers").value = detail.request.headers
    .map(([name, value]) => `${name}: ${value}`)
    .join("\n");
  field(form, "body").value = original;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const headers = parseHeaderLines(String(data.get("headers")));
    if (typeof headers === "string") {
      error.textContent = headers;
      return;
    }
    const changes: ReplayChanges = {
      method: String(data.get("method")).trim(),
      path: String(data.get("path")).trim(),
      headers,
    };
    const newBody = String(data.get("body"));
    if (newBody !== original) changes.body = newBody;
    send(changes);
  });
  return form;
}

function field(form: HTMLFormElement, name: string): HTMLTextAreaElement {
  return form.elements.namedItem(name) as HTMLTextAreaElement;
}

/** The header list, or the reason a line is not a header. */
function parseHeaderLines(text: string): HeaderList | string {
  const headers: HeaderList = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) return `Not a header line (expected “Name: value”): ${line}`;
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return headers;
}
