// What the agent exposes on /metrics (with --admin): its streams and its gateway connections.
import { MetricRegistry } from "../shared/metrics.ts";
import { streamStats } from "../shared/stream-stats.ts";

export class AgentMetrics {
  readonly registry = new MetricRegistry();
  readonly dials = this.registry.counter("indranet_gateway_dials_total", "Connection attempts to a gateway");

  constructor(tunnels: ReadonlySet<unknown>, draining: () => boolean) {
    const { registry } = this;
    registry.gauge(
      "indranet_gateway_connections",
      "Authenticated connections to gateways",
      () => tunnels.size,
    );
    registry.gauge(
      "indranet_streams_open",
      "Requests in flight to the local service",
      () => streamStats.open,
    );
    registry.gauge(
      "indranet_stream_peak_buffered_bytes",
      "Most body bytes one stream has held in this process",
      () => streamStats.peakBuffered,
    );
    registry.gauge("indranet_draining", "1 while shutting down", () => (draining() ? 1 : 0));
  }
}
