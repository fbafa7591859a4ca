// What the gateway's own commands (`agents`, `requests`) use to ask a running gateway's admin
// listener: its address, and the admin token when one is set (INDRANET_ADMIN_TOKEN[_FILE]).
import { adminUrl } from "../shared/admin.ts";

/** A fetch to a gateway that is not there must not hang the command. */
const FETCH_TIMEOUT_MS = 5_000;

export interface AdminTarget {
  hostname: string;
  port: number;
  token: string | undefined;
}

/** GET `path`; a stream (the live feed) is not cut by the timeout once it has answered. */
export async function adminGet(target: AdminTarget, path: string, stream = false): Promise<Response> {
  const url = `${adminUrl(target.hostname, target.port)}${path}`;
  const headers: Record<string, string> = target.token ? { authorization: `Bearer ${target.token}` } : {};
  let res: Response;
  try {
    res = await fetch(url, { headers, ...(stream ? {} : { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }) });
  } catch (error) {
    throw new Error(`cannot reach ${url}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (res.status === 401)
    throw new Error(`${url}: the admin token is missing or wrong (INDRANET_ADMIN_TOKEN[_FILE])`);
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res;
}
