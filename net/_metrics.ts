// Copyright the ptkit authors. MIT license.
// Internal: the metrics registry (counters, gauges and histograms with label
// sets), snapshots that a parent can sum over workers, and the Prometheus
// text exposition format (version 0.0.4) encoder. The public face is
// `MetricsRegistry` in `metrics.ts`.
//
// Label values come only from closed sets, checked when a label set is
// bound: a fixed list of words, or a transport name (a C identifier). An
// address, a key, a cookie or a bridge secret can therefore never become a
// label value; the error for a bad value names the label, never the value.

/** What a label may hold: one of a fixed list of values, or a transport name (a C identifier). */
export type LabelRule = readonly string[] | "transport name";

/** A metric's type. */
export type MetricType = "counter" | "gauge" | "histogram";

/** One series of a snapshot: its label values and value(s). */
export interface SeriesSnapshot {
  /** The label values, in the family's `labelNames` order. */
  readonly labels: readonly string[];
  /** The value (a histogram's count of observations). */
  readonly value: number;
  /** Histograms: observations per bucket (not cumulative), the last for `+Inf`. */
  readonly counts?: readonly number[];
  /** Histograms: the sum of the observations. */
  readonly sum?: number;
}

/** One metric family of a snapshot. */
export interface FamilySnapshot {
  /** The metric's name. */
  readonly name: string;
  /** Its HELP text. */
  readonly help: string;
  /** Its type. */
  readonly type: MetricType;
  /** Its label names. */
  readonly labelNames: readonly string[];
  /** Histograms: the buckets' upper bounds, ascending, without `+Inf`. */
  readonly buckets?: readonly number[];
  /** Its series. */
  readonly series: readonly SeriesSnapshot[];
}

/** A registry's values at one moment: plain data (it survives `structuredClone` and JSON). */
export interface MetricsSnapshot {
  /** The metric families, in registration order. */
  readonly families: readonly FamilySnapshot[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TRANSPORT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A counter for one label set. */
export class Counter {
  #value = 0;
  #sources = new Set<() => number>();

  /**
   * Add to it.
   *
   * @param n How much (a finite number, 0 or more). Defaults to 1.
   */
  inc(n = 1): void {
    if (n > 0) this.#value += n;
  }

  /**
   * Count what `source` returns (a total that only grows, such as a
   * connection's bytes) until released; its last value is kept then.
   *
   * @param source Returns the running total.
   * @returns Releases the source.
   */
  track(source: () => number): () => void {
    this.#sources.add(source);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#sources.delete(source);
      this.inc(source());
    };
  }

  /** The value now. */
  get value(): number {
    let total = this.#value;
    for (const source of this.#sources) total += source();
    return total;
  }
}

/** A gauge for one label set. */
export class Gauge {
  #value = 0;
  #sources = new Set<() => number>();

  /** Set it. */
  set(value: number): void {
    this.#value = value;
  }

  /** Add 1 (or `n`). */
  inc(n = 1): void {
    this.#value += n;
  }

  /** Subtract 1 (or `n`). */
  dec(n = 1): void {
    this.#value -= n;
  }

  /**
   * Add what `source` returns at each scrape (a level read from elsewhere)
   * until released.
   *
   * @param source Returns the level.
   * @returns Releases the source (it stops counting).
   */
  track(source: () => number): () => void {
    this.#sources.add(source);
    return () => this.#sources.delete(source);
  }

  /** The value now. */
  get value(): number {
    let total = this.#value;
    for (const source of this.#sources) total += source();
    return total;
  }
}

/** A histogram for one label set. */
export class Histogram {
  #bounds: readonly number[];
  #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.#counts = new Array(bounds.length + 1).fill(0);
  }

  /** Record one observation. */
  observe(value: number): void {
    let i = 0;
    while (i < this.#bounds.length && value > this.#bounds[i]!) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  /** Observations per bucket (not cumulative), the last for `+Inf`. */
  get counts(): readonly number[] {
    return [...this.#counts];
  }

  /** The sum of the observations. */
  get sum(): number {
    return this.#sum;
  }

  /** How many observations. */
  get count(): number {
    return this.#count;
  }
}

type Child = Counter | Gauge | Histogram;

/** A metric family: one name, HELP and TYPE, one child per label set. */
export class Family<C extends Child> {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly labelNames: readonly string[];
  readonly buckets: readonly number[] | undefined;
  #rules: readonly LabelRule[];
  #make: () => C;
  #children = new Map<string, { labels: readonly string[]; child: C }>();

  constructor(
    type: MetricType,
    name: string,
    help: string,
    labels: Readonly<Record<string, LabelRule>>,
    make: () => C,
    buckets?: readonly number[],
  ) {
    if (!METRIC_NAME.test(name)) throw new SyntaxError(`Invalid metric name '${name}'`);
    this.labelNames = Object.keys(labels);
    for (const label of this.labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__") || label === "le") {
        throw new SyntaxError(`Invalid label name '${label}' for metric '${name}'`);
      }
    }
    this.type = type;
    this.name = name;
    this.help = help;
    this.#rules = Object.values(labels);
    this.#make = make;
    this.buckets = buckets;
  }

  /**
   * The child for one label set, made on first use. Bind it once (per
   * listener, per connection) and keep it: this is a map lookup.
   *
   * @param values A value for every label of the family.
   * @returns The child.
   * @throws {RangeError} When a label is missing or its value is outside its closed set (the
   * message names the label, never the value).
   */
  labels(values: Readonly<Record<string, string>> = {}): C {
    const list: string[] = [];
    for (let i = 0; i < this.labelNames.length; i++) {
      const label = this.labelNames[i]!;
      const value = values[label];
      const rule = this.#rules[i]!;
      const allowed = typeof value === "string" &&
        (rule === "transport name" ? TRANSPORT_NAME.test(value) : rule.includes(value));
      if (!allowed) {
        throw new RangeError(
          `Invalid value for label '${label}' of metric '${this.name}': ${
            rule === "transport name" ? "must be a transport name" : `must be one of ${rule}`
          }`,
        );
      }
      list.push(value);
    }
    const key = list.join("\0");
    let entry = this.#children.get(key);
    if (entry === undefined) {
      entry = { labels: list, child: this.#make() };
      this.#children.set(key, entry);
    }
    return entry.child;
  }

  /** The family's values now. */
  snapshot(): FamilySnapshot {
    const series: SeriesSnapshot[] = [];
    for (const { labels, child } of this.#children.values()) {
      if (child instanceof Histogram) {
        series.push({ labels, value: child.count, counts: child.counts, sum: child.sum });
        continue;
      }
      try {
        series.push({ labels, value: child.value });
      } catch {
        // A source that cannot be read now (a file gone, a permission) leaves its series out.
      }
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      labelNames: this.labelNames,
      ...(this.buckets === undefined ? {} : { buckets: this.buckets }),
      series,
    };
  }
}

/** The registry: families by name, and functions run before each snapshot. */
export class MetricsCore {
  #families = new Map<string, Family<Child>>();
  #collectors = new Set<() => void>();
  #included = new Set<() => MetricsSnapshot>();

  /** The counter family `name`, made on first use (later calls must agree on labels). */
  counter(
    name: string,
    help: string,
    labels: Readonly<Record<string, LabelRule>> = {},
  ): Family<Counter> {
    return this.#family("counter", name, help, labels, () => new Counter()) as Family<Counter>;
  }

  /** The gauge family `name`, made on first use. */
  gauge(
    name: string,
    help: string,
    labels: Readonly<Record<string, LabelRule>> = {},
  ): Family<Gauge> {
    return this.#family("gauge", name, help, labels, () => new Gauge()) as Family<Gauge>;
  }

  /** The histogram family `name` with `buckets` (ascending upper bounds), made on first use. */
  histogram(
    name: string,
    help: string,
    labels: Readonly<Record<string, LabelRule>>,
    buckets: readonly number[],
  ): Family<Histogram> {
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]!) || (i > 0 && buckets[i]! <= buckets[i - 1]!)) {
        throw new RangeError(`Invalid buckets for metric '${name}': must be finite and ascending`);
      }
    }
    return this.#family(
      "histogram",
      name,
      help,
      labels,
      () => new Histogram(buckets),
      buckets,
    ) as Family<Histogram>;
  }

  /**
   * Run `collect` before each snapshot (to refresh values read from elsewhere).
   *
   * @returns Stops running it.
   */
  onCollect(collect: () => void): () => void {
    this.#collectors.add(collect);
    return () => this.#collectors.delete(collect);
  }

  /** Every family's values now. */
  snapshot(): MetricsSnapshot {
    for (const collect of this.#collectors) {
      try {
        collect();
      } catch {
        // A failing collector leaves its values as they were.
      }
    }
    const own = { families: [...this.#families.values()].map((family) => family.snapshot()) };
    if (this.#included.size === 0) return own;
    const all: MetricsSnapshot[] = [own];
    for (const source of this.#included) {
      try {
        all.push(source());
      } catch {
        // A source that fails now is left out of this snapshot.
      }
    }
    return sumSnapshots(all);
  }

  /**
   * Add what `source` returns to every snapshot (a parent's workers): its
   * series are summed with the registry's own.
   *
   * @param source Returns the snapshot to add.
   * @returns Stops including it.
   */
  include(source: () => MetricsSnapshot): () => void {
    this.#included.add(source);
    return () => this.#included.delete(source);
  }

  #family(
    type: MetricType,
    name: string,
    help: string,
    labels: Readonly<Record<string, LabelRule>>,
    make: () => Child,
    buckets?: readonly number[],
  ): Family<Child> {
    const existing = this.#families.get(name);
    if (existing !== undefined) {
      if (existing.type !== type || existing.labelNames.join() !== Object.keys(labels).join()) {
        throw new TypeError(`Metric '${name}' is already registered with another type or labels`);
      }
      return existing;
    }
    const family = new Family(type, name, help, labels, make, buckets);
    this.#families.set(name, family);
    return family;
  }
}

/**
 * Add snapshots up: series with the same name and label values are summed
 * (a parent reporting the sum over its workers). With `gauges: false` only
 * counters and histograms are kept: what a parent folds into its running
 * base when a worker exits, so that counters never go backwards while the
 * gauges of a worker that is gone drop out.
 */
export function sumSnapshots(
  snapshots: readonly MetricsSnapshot[],
  options: { readonly gauges?: boolean } = {},
): MetricsSnapshot {
  const families = new Map<
    string,
    {
      meta: FamilySnapshot;
      series: Map<
        string,
        { labels: readonly string[]; value: number; counts?: number[]; sum?: number }
      >;
    }
  >();
  for (const snapshot of snapshots) {
    for (const family of snapshot.families) {
      if (family.type === "gauge" && options.gauges === false) continue;
      let entry = families.get(family.name);
      if (entry === undefined) {
        entry = { meta: family, series: new Map() };
        families.set(family.name, entry);
      } else if (
        entry.meta.type !== family.type ||
        entry.meta.labelNames.join() !== family.labelNames.join() ||
        (entry.meta.buckets ?? []).join() !== (family.buckets ?? []).join()
      ) {
        continue; // Not the same metric: keep the first.
      }
      for (const series of family.series) {
        const key = series.labels.join("\0");
        const seen = entry.series.get(key);
        if (seen === undefined) {
          entry.series.set(key, {
            labels: series.labels,
            value: series.value,
            ...(series.counts === undefined ? {} : { counts: [...series.counts] }),
            ...(series.sum === undefined ? {} : { sum: series.sum }),
          });
          continue;
        }
        seen.value += series.value;
        if (seen.counts !== undefined && series.counts !== undefined) {
          for (let i = 0; i < seen.counts.length; i++) seen.counts[i]! += series.counts[i] ?? 0;
        }
        if (seen.sum !== undefined && series.sum !== undefined) seen.sum += series.sum;
      }
    }
  }
  return {
    families: [...families.values()].map(({ meta, series }) => ({
      ...meta,
      series: [...series.values()],
    })),
  };
}

/** A sample value as the text format writes it (`+Inf`, `-Inf`, `NaN`, else a Go-readable float). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Escape a HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\\" ? "\\\\" : "\\n");
}

/** Escape a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\\" ? "\\\\" : c === '"' ? '\\"' : "\\n");
}

function labelText(names: readonly string[], values: readonly string[], extra?: string): string {
  const parts = names.map((name, i) => `${name}="${escapeLabelValue(values[i] ?? "")}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/**
 * Write a snapshot in the Prometheus text exposition format, version 0.0.4:
 * per family a `# HELP` and a `# TYPE` line, then its samples; histograms as
 * cumulative `_bucket{le="..."}` lines ending with `le="+Inf"` (equal to
 * `_count`), then `_sum` and `_count`. Families without a series are left
 * out. Every line ends with a line feed.
 */
export function encodeSnapshot(snapshot: MetricsSnapshot): string {
  const lines: string[] = [];
  for (const family of snapshot.families) {
    if (family.series.length === 0) continue;
    const { name, labelNames } = family;
    lines.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`);
    for (const series of family.series) {
      if (family.type !== "histogram") {
        lines.push(`${name}${labelText(labelNames, series.labels)} ${formatValue(series.value)}`);
        continue;
      }
      const bounds = family.buckets ?? [];
      const counts = series.counts ?? [];
      let cumulative = 0;
      for (let i = 0; i < bounds.length; i++) {
        cumulative += counts[i] ?? 0;
        const le = `le="${formatValue(bounds[i]!)}"`;
        lines.push(`${name}_bucket${labelText(labelNames, series.labels, le)} ${cumulative}`);
      }
      lines.push(
        `${name}_bucket${labelText(labelNames, series.labels, 'le="+Inf"')} ${series.value}`,
        `${name}_sum${labelText(labelNames, series.labels)} ${formatValue(series.sum ?? 0)}`,
        `${name}_count${labelText(labelNames, series.labels)} ${series.value}`,
      );
    }
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}
