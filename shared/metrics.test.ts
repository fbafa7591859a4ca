import { describe, expect, test } from "bun:test";
import { MetricRegistry } from "./metrics.ts";

describe("Prometheus text exposition", () => {
  test("renders HELP, TYPE and samples in declaration order", () => {
    const metrics = new MetricRegistry();
    const requests = metrics.counter("t_requests_total", "Requests", "class");
    metrics.gauge("t_open", "Open things", () => 3);
    requests.inc(1, "2xx");
    requests.inc(2, "5xx");
    requests.inc(1, "2xx");
    expect(metrics.render()).toBe(
      [
        "# HELP t_requests_total Requests",
        "# TYPE t_requests_total counter",
        't_requests_total{class="2xx"} 2',
        't_requests_total{class="5xx"} 2',
        "# HELP t_open Open things",
        "# TYPE t_open gauge",
        "t_open 3",
        "",
      ].join("\n"),
    );
  });

  test("a gauge reads its value at each scrape", () => {
    const metrics = new MetricRegistry();
    let open = 1;
    metrics.gauge("t_open", "Open", () => open);
    expect(metrics.render()).toContain("t_open 1\n");
    open = 0;
    expect(metrics.render()).toContain("t_open 0\n");
  });

  test("histogram buckets are cumulative and end with +Inf, sum and count", () => {
    const metrics = new MetricRegistry();
    const latency = metrics.histogram("t_seconds", "Latency", [0.1, 1]);
    for (const value of [0.05, 0.5, 0.5, 7]) latency.observe(value);
    expect(metrics.render()).toContain(
      [
        't_seconds_bucket{le="0.1"} 1',
        't_seconds_bucket{le="1"} 3',
        't_seconds_bucket{le="+Inf"} 4',
        "t_seconds_sum 8.05",
        "t_seconds_count 4",
      ].join("\n"),
    );
  });

  test("label values are escaped", () => {
    const metrics = new MetricRegistry();
    metrics.counter("t_total", "T", "reason").inc(1, 'a"b\\c\nd');
    expect(metrics.render()).toContain('t_total{reason="a\\"b\\\\c\\nd"} 1');
  });

  test("refuses an invalid or repeated name", () => {
    const metrics = new MetricRegistry();
    expect(() => metrics.gauge("bad-name", "x", () => 0)).toThrow("invalid metric name");
    metrics.gauge("t_x", "x", () => 0);
    expect(() => metrics.counter("t_x", "x")).toThrow("declared twice");
  });
});
