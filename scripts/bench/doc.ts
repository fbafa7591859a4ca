// docs/PERFORMANCE.md keeps its prose (method, targets, analysis) by hand; the bench rewrites only
// the parts between its markers, so a re-run refreshes the figures and nothing else.
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const SKELETON = `# Performance

\`make bench\` measures the tunnel against nginx serving directly, an nginx reverse-proxy hop and
\`ssh -R\` tunnels on loopback, and rewrites the figures below.

## Results

<!-- bench:results:begin -->
<!-- bench:results:end -->

<!-- bench:cluster:begin -->
<!-- bench:cluster:end -->

<!-- bench:inspector:begin -->
<!-- bench:inspector:end -->

<!-- bench:tcp:begin -->
<!-- bench:tcp:end -->

## Where the time goes

<!-- bench:profile:begin -->
<!-- bench:profile:end -->
`;

/** Replaces the text between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`. */
export function updateSection(file: string, name: string, content: string): void {
  const text = existsSync(file) ? readFileSync(file, "utf8") : SKELETON;
  const begin = `<!-- bench:${name}:begin -->`;
  const end = `<!-- bench:${name}:end -->`;
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) {
    throw new Error(`${file}: markers ${begin} … ${end} not found; results left unwritten`);
  }
  writeFileSync(file, `${text.slice(0, from + begin.length)}\n${content.trim()}\n${text.slice(to)}`);
}
