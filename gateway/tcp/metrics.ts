// The TCP ports' metrics, beside the gateway's own (gateway/metrics.ts) on the same registry.
import { DURATION_BUCKETS, type MetricRegistry } from "../../shared/metrics.ts";
import type { TcpExchange, TcpPorts } from "./ports.ts";

export class TcpMetrics {
  readonly #connections;
  readonly #bytes;
  readonly #duration;

  constructor(registry: MetricRegistry, ports: TcpPorts) {
    registry.gauge(
      "indranet_tcp_connections_open",
      "TCP connections open on [[tcp]] ports",
      () => ports.open,
    );
    this.#connections = registry.counter(
      "indranet_tcp_connections_total",
      "TCP connections on [[tcp]] ports once closed: ok, or error (refused, cut)",
      "result",
    );
    this.#bytes = registry.counter(
      "indranet_tcp_bytes_total",
      "Bytes carried for TCP connections: in from clients, out to them",
      "direction",
    );
    this.#duration = registry.histogram(
      "indranet_tcp_connection_duration_seconds",
      "From a TCP connection's accept to its close",
      DURATION_BUCKETS,
    );
    for (const result of ["ok", "error"]) this.#connections.inc(0, result);
    for (const direction of ["in", "out"]) this.#bytes.inc(0, direction);
  }

  exchange(e: TcpExchange): void {
    this.#connections.inc(1, e.error === undefined ? "ok" : "error");
    this.#bytes.inc(e.bytesIn, "in");
    this.#bytes.inc(e.bytesOut, "out");
    this.#duration.observe(e.durationMs / 1000);
  }
}
