// `gateway-tunnel requests`: the inspector's list in a terminal, oldest first, and with
// `--follow` every exchange as it finishes, the way `tail -f` follows a log.
import { type AdminTarget, adminGet } from "../admin-client.ts";

interface Summary {
  started_at: string;
  agent: string;
  method: string;
  path: string;
  status: number;
  error: string;
  duration_ms: number;
  response_bytes: number;
  id: string;
}

export async function printRequests(
  target: AdminTarget,
  options: { agent?: string; follow: boolean },
  write: (text: string) => void,
): Promise<void> {
  const query = options.agent ? `?agent=${encodeURIComponent(options.agent)}` : "";
  const { requests } = (await (await adminGet(target, `/api/requests${query}`)).json()) as {
    requests: Summary[];
  };
  for (const summary of requests.reverse()) write(formatRequest(summary));
  if (!options.follow) return;
  const feed = await adminGet(target, "/api/requests/feed", true);
  for await (const event of serverSentEvents(feed)) {
    const summary = JSON.parse(event) as Summary;
    if (!options.agent || summary.agent === options.agent) write(formatRequest(summary));
  }
}

export function formatRequest(s: Summary): string {
  const time = s.started_at.slice(11, 23);
  const outcome = s.error ? `${s.status} ${s.error}` : String(s.status);
  return `${time}  ${s.agent || "-"}  ${s.method} ${s.path}  ${outcome}  ${s.duration_ms} ms  ${s.response_bytes} B  ${s.id}\n`;
}

/** The `data:` of each event of a text/event-stream response. */
async function* serverSentEvents(res: Response): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of res.body as ReadableStream<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end !== -1) {
      const data = buffered
        .slice(0, end)
        .split("\n")
        .filter((line) => line.startsWith("data: "))
        .map((line) => line.slice(6))
        .join("\n");
      buffered = buffered.slice(end + 2);
      if (data) yield data;
      end = buffered.indexOf("\n\n");
    }
  }
}
