// Prometheus text exposition (format 0.0.4), written by hand: counters, gauges read at scrape
// time and one kind of histogram are all either binary needs, and each is one line to declare.

/** The Content-Type Prometheus expects for this format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Request latency buckets in seconds, from a cached page to a slow report. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  /** The sample lines, without HELP and TYPE. */
  samples(): string[];
}

/** A monotonic count, optionally split by one label (`requests_total{class="2xx"}`). */
export class Counter {
  readonly #values = new Map<string, number>();
  readonly #label: string | undefined;

  constructor(label?: string) {
    this.#label = label;
  }

  inc(by = 1, labelValue = ""): void {
    this.#values.set(labelValue, (this.#values.get(labelValue) ?? 0) + by);
  }

  get(labelValue = ""): number {
    return this.#values.get(labelValue) ?? 0;
  }

  samples(name: string): string[] {
    if (this.#label === undefined) return [`${name} ${this.get()}`];
    const lines: string[] = [];
    for (const [value, count] of this.#values)
      lines.push(`${name}{${this.#label}="${escapeLabel(value)}"} ${count}`);
    return lines;
  }
}

/** Cumulative buckets, a sum and a count, as Prometheus histograms are. */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.#counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    // Non-cumulative here; summed up at scrape time, which is rarer than an observation.
    const i = this.#bounds.findIndex((bound) => value <= bound);
    if (i !== -1) this.#counts[i] = (this.#counts[i] as number) + 1;
  }

  samples(name: string): string[] {
    const lines: string[] = [];
    let cumulative = 0;
    this.#bounds.forEach((bound, i) => {
      cumulative += this.#counts[i] as number;
      lines.push(`${name}_bucket{le="${bound}"} ${cumulative}`);
    });
    lines.push(
      `${name}_bucket{le="+Inf"} ${this.#count}`,
      `${name}_sum ${this.#sum}`,
      `${name}_count ${this.#count}`,
    );
    return lines;
  }
}

/** The metrics one process exposes, rendered in the order they were declared. */
export class MetricRegistry {
  readonly #families: Family[] = [];

  counter(name: string, help: string, label?: string): Counter {
    const counter = new Counter(label);
    this.#add({ name, help, type: "counter", samples: () => counter.samples(name) });
    return counter;
  }

  /** A counter kept elsewhere (e.g. summed over live connections), read at each scrape. */
  counterFrom(name: string, help: string, read: () => number): void {
    this.#add({ name, help, type: "counter", samples: () => [`${name} ${read()}`] });
  }

  /** A gauge is read at each scrape, so it can never drift from the state it reports. */
  gauge(name: string, help: string, read: () => number): void {
    this.#add({ name, help, type: "gauge", samples: () => [`${name} ${read()}`] });
  }

  /** A gauge with one sample per label value, all read at each scrape. */
  labelledGauge(name: string, help: string, label: string, read: () => Iterable<[string, number]>): void {
    const samples = () =>
      Array.from(read(), ([value, n]) => `${name}{${label}="${escapeLabel(value)}"} ${n}`);
    this.#add({ name, help, type: "gauge", samples });
  }

  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    const histogram = new Histogram(bounds);
    this.#add({ name, help, type: "histogram", samples: () => histogram.samples(name) });
    return histogram;
  }

  render(): string {
    const lines: string[] = [];
    for (const family of this.#families) {
      lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
      lines.push(...family.samples());
    }
    return `${lines.join("\n")}\n`;
  }

  #add(family: Family): void {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(family.name))
      throw new Error(`invalid metric name ${family.name}`);
    if (this.#families.some((f) => f.name === family.name)) throw new Error(`${family.name} declared twice`);
    this.#families.push(family);
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
