// Copyright the ptkit authors. MIT license.

// Test-only statistics: the two-sample Kolmogorov-Smirnov test, used to
// compare what ptkit and obfs4proxy show on the wire.

/** The result of {@linkcode ksTwoSample}. */
export interface KsResult {
  /** The largest distance between the two empirical CDFs. */
  readonly d: number;
  /** Where it is largest. */
  readonly at: number;
  /** The asymptotic p-value of `d`. */
  readonly p: number;
}

/**
 * The Kolmogorov distribution's tail, Q(λ) = P(K > λ) (Numerical Recipes'
 * two series: one converges fast below 1.18, the other above).
 */
export function kolmogorovQ(lambda: number): number {
  if (lambda <= 0) return 1;
  if (lambda < 1.18) {
    const c = -(Math.PI ** 2) / (8 * lambda * lambda);
    let sum = 0;
    for (let k = 1; k <= 20; k += 2) sum += Math.exp(c * k * k);
    return Math.min(1, Math.max(0, 1 - (Math.sqrt(2 * Math.PI) / lambda) * sum));
  }
  let sum = 0;
  for (let k = 1; k <= 100; k++) {
    sum += 2 * (k % 2 === 1 ? 1 : -1) * Math.exp(-2 * k * k * lambda * lambda);
  }
  return Math.min(1, Math.max(0, sum));
}

/**
 * Two-sample Kolmogorov-Smirnov test: how likely samples as far apart as
 * `a` and `b` are if both come from one continuous distribution. Ties are
 * stepped over together, so discrete data gives a conservative p.
 */
export function ksTwoSample(a: readonly number[], b: readonly number[]): KsResult {
  if (a.length === 0 || b.length === 0) throw new RangeError("Cannot compare an empty sample");
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  let at = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i]! <= v) i++;
    while (j < y.length && y[j]! <= v) j++;
    const diff = Math.abs(i / x.length - j / y.length);
    if (diff > d) {
      d = diff;
      at = v;
    }
  }
  const n = Math.sqrt((x.length * y.length) / (x.length + y.length));
  return { d, at, p: kolmogorovQ((n + 0.12 + 0.11 / n) * d) };
}

/** A deterministic uniform [0, 1) source (mulberry32), for tests of tests. */
export function seededUniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
