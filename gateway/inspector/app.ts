// The inspector page: the login form when the API asks for the admin token, otherwise the
// agents, the request list (loaded once per filter, then kept current by the feed) and the
// selected exchange.

import { renderAgents } from "./agents.ts";
import { ApiError, api, FEED_URL, type ReplayChanges, type Summary, Unauthorized } from "./api.ts";
import { DetailPane } from "./detail.ts";
import { byId } from "./dom.ts";
import { apiQuery, FilterBar } from "./filters.ts";
import { LIST_LIMIT, RequestList } from "./request-list.ts";

/** Agents change rarely and their byte counts are a glance: polling is enough. */
const AGENTS_REFRESH_MS = 2_000;

/** After the feed was refused (not a lost connection, which EventSource retries itself). */
const FEED_RETRY_MS = 3_000;

class Inspector {
  readonly #filters = new FilterBar(() => this.#run(this.#reload()));
  readonly #list = new RequestList((id) => this.#run(this.#select(id)));
  readonly #detail = new DetailPane({
    replay: (id, changes) => this.#run(this.#replay(id, changes)),
    select: (id) => this.#run(this.#select(id)),
  });
  readonly #notice = byId("notice");
  readonly #feedState = byId("feed-state");
  #selected: string | null = null;
  /** The selected exchange is not shown yet (a replay may still run): the feed's report of it loads it. */
  #awaiting = false;
  /** Each reload's number; an answer to an older filter is dropped. */
  #generation = 0;

  start(): void {
    this.#detail.message("Select a request to see it in full.");
    this.#run(this.#reload());
    this.#run(this.#refreshAgents());
    setInterval(() => this.#run(this.#refreshAgents()), AGENTS_REFRESH_MS);
    this.#follow();
  }

  async #reload(): Promise<void> {
    const generation = ++this.#generation;
    const filter = this.#filters.value;
    const rows = await api.requests(apiQuery(filter, LIST_LIMIT));
    if (generation !== this.#generation) return;
    this.#filters.learnAgents(rows.map((s) => s.agent));
    this.#list.replace(rows, filter);
  }

  async #refreshAgents(): Promise<void> {
    const agents = await api.agents();
    this.#filters.learnAgents(agents.map((a) => a.id));
    renderAgents(agents);
  }

  #follow(): void {
    const feed = new EventSource(FEED_URL);
    let opened = false;
    feed.addEventListener("open", () => {
      this.#feedState.textContent = "live";
      // Exchanges that finished while the feed was down are only in the API's list.
      if (opened) this.#run(this.#reload());
      opened = true;
    });
    feed.addEventListener("error", () => {
      this.#feedState.textContent = "reconnecting…";
      // EventSource gives up on an answer other than 200; a 401 means the login expired.
      if (feed.readyState !== EventSource.CLOSED) return;
      this.#run(api.session().then(() => void setTimeout(() => this.#follow(), FEED_RETRY_MS)));
    });
    feed.addEventListener("request", (event) => this.#arrived(JSON.parse((event as MessageEvent).data)));
  }

  #arrived(summary: Summary): void {
    this.#filters.learnAgents([summary.agent]);
    this.#list.add(summary, this.#filters.value);
    if (this.#awaiting && summary.id === this.#selected) this.#run(this.#select(summary.id));
  }

  async #select(id: string): Promise<void> {
    this.#selected = id;
    this.#list.select(id);
    this.#notice.textContent = "";
    // Set before asking, so that the feed's report of a replay finishing meanwhile is not missed.
    this.#awaiting = true;
    try {
      const detail = await api.detail(id);
      if (this.#selected !== id) return;
      this.#awaiting = false;
      this.#detail.show(detail);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      if (this.#selected === id && this.#awaiting) this.#detail.message(`Waiting for ${id} to finish…`);
    }
  }

  async #replay(id: string, changes?: ReplayChanges): Promise<void> {
    this.#notice.textContent = "Replaying…";
    await this.#select(await api.replay(id, changes));
  }

  /** Every action ends here: a 401 shows the login form, anything else is said in the header. */
  #run(action: Promise<void>): void {
    action.catch((error: unknown) => {
      if (error instanceof Unauthorized) showLogin();
      else this.#notice.textContent = error instanceof Error ? error.message : String(error);
    });
  }
}

function showLogin(): void {
  byId("inspector").hidden = true;
  byId("login").hidden = false;
  byId("login-failed").hidden = new URLSearchParams(location.search).get("login") !== "failed";
  byId("token").focus();
}

async function main(): Promise<void> {
  try {
    const session = await api.session();
    byId("logout").hidden = session.auth !== "ok";
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin();
    throw error;
  }
  byId("inspector").hidden = false;
  new Inspector().start();
}

void main();
