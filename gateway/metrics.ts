// What the gateway exposes on /metrics. Gauges are read from the live state at scrape time;
// counters move as requests finish and agents authenticate.
import { DURATION_BUCKETS, MetricRegistry } from "../shared/metrics.ts";
import { streamStats } from "../shared/stream-stats.ts";
import type { Exchange } from "./access-log.ts";
import type { ClusterDirectory } from "./cluster/directory.ts";
import type { HeldRequests } from "./hold.ts";
import type { SessionRegistry } from "./sessions.ts";

const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

export class GatewayMetrics {
  readonly registry = new MetricRegistry();
  readonly #requests = this.registry.counter(
    "indranet_requests_total",
    "HTTP requests answered, by status class",
    "class",
  );
  readonly #duration = this.registry.histogram(
    "indranet_request_duration_seconds",
    "From the request's arrival to the end of its response body",
    DURATION_BUCKETS,
  );
  readonly #responseBytes = this.registry.counter(
    "indranet_response_bytes_total",
    "Response-body bytes delivered to clients",
  );
  readonly authFailures = this.registry.counter(
    "indranet_auth_failures_total",
    "Agent connections refused by authentication, by reason",
    "reason",
  );
  readonly #forwarded = this.registry.counter(
    "indranet_forwarded_requests_total",
    "Requests forwarded between gateways: out to a peer, or in from one",
    "direction",
  );
  readonly accessRefused = this.registry.counter(
    "indranet_access_refused_total",
    "Requests refused by an agent's access rules, by reason (unauthorized, forbidden, rate_limited)",
    "reason",
  );
  readonly reloads = this.registry.counter(
    "indranet_config_reloads_total",
    "Config reloads on SIGHUP, by result",
    "result",
  );

  constructor(sessions: SessionRegistry, draining: () => boolean) {
    const { registry } = this;
    registry.gauge("indranet_agents_connected", "Authenticated agent sessions", () => sessions.size);
    registry.gauge("indranet_streams_open", "Requests in flight through the tunnel", () => streamStats.open);
    registry.gauge(
      "indranet_stream_peak_buffered_bytes",
      "Most body bytes one stream has held in this process",
      () => streamStats.peakBuffered,
    );
    registry.gauge("indranet_draining", "1 while shutting down", () => (draining() ? 1 : 0));
    registry.counterFrom(
      "indranet_tunnel_bytes_received_total",
      "Bytes received from agents over their WebSockets",
      () => sessions.bytesIn(),
    );
    registry.counterFrom(
      "indranet_tunnel_bytes_sent_total",
      "Bytes sent to agents over their WebSockets",
      () => sessions.bytesOut(),
    );
    // Every class is listed from the start, so a rate() over it has a series before the first error.
    for (const statusClass of STATUS_CLASSES) this.#requests.inc(0, statusClass);
    for (const reason of ["unauthorized", "forbidden", "rate_limited"]) this.accessRefused.inc(0, reason);
  }

  /** The held requests, and in a cluster whether Redis answers and how many gateways are live. */
  watchHolds(holds: HeldRequests, directory: ClusterDirectory | undefined): void {
    const { registry } = this;
    registry.gauge(
      "indranet_requests_held",
      "Requests waiting for their agent to reconnect",
      () => holds.held,
    );
    if (!directory) return;
    this.#forwarded.inc(0, "out");
    this.#forwarded.inc(0, "in");
    registry.gauge("indranet_cluster_redis_up", "1 while the cluster's Redis answers", () =>
      directory.available ? 1 : 0,
    );
    registry.gauge(
      "indranet_cluster_gateways",
      "Live gateways in the cluster, this one included",
      () => directory.liveGateways.length,
    );
  }

  exchange(e: Exchange): void {
    if (e.via) this.#forwarded.inc(1, "in");
    else if (e.to) this.#forwarded.inc(1, "out");
    this.#requests.inc(1, STATUS_CLASSES[Math.floor(e.status / 100) - 1] ?? "5xx");
    this.#duration.observe(e.durationMs / 1000);
    this.#responseBytes.inc(e.bytes);
  }
}
