// Formatting of metric values for the dashboards. Every function answers "insufficient data"
// rather than 0 or NaN when the value cannot be computed, so a chart never lies by omission.

export const INSUFFICIENT_DATA = 'insufficient data';

const counts = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function isNumber(value: number | null | undefined): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** numerator ÷ denominator, or null when the denominator is zero or unknown. */
export function ratio(
  numerator: number | null | undefined,
  denominator: number | null | undefined,
): number | null {
  if (!isNumber(numerator) || !isNumber(denominator) || denominator <= 0) return null;
  return numerator / denominator;
}

/** A rate in [0, 1] as a percentage with one decimal: 0.4251 → "42.5%". */
export function formatPercent(rate: number | null | undefined, digits = 1): string {
  if (!isNumber(rate)) return INSUFFICIENT_DATA;
  const percent = rate * 100;
  // 99.96% must not round up to a misleading "100.0%".
  const factor = 10 ** digits;
  const shown =
    percent < 100 && Math.round(percent * factor) / factor >= 100
      ? Math.floor(percent * factor) / factor
      : percent;
  return `${shown.toFixed(digits)}%`;
}

export function formatCount(value: number | null | undefined): string {
  if (!isNumber(value)) return INSUFFICIENT_DATA;
  return counts.format(value);
}

/** A number of lines of code: "1 line", "1,204 lines". */
export function formatLines(value: number | null | undefined): string {
  if (!isNumber(value)) return INSUFFICIENT_DATA;
  const whole = Math.round(value);
  return `${counts.format(whole)} ${whole === 1 ? 'line' : 'lines'}`;
}

/** A latency in milliseconds: "<1 ms", "87 ms", "1.25 s". */
export function formatLatencyMs(value: number | null | undefined): string {
  if (!isNumber(value) || value < 0) return INSUFFICIENT_DATA;
  if (value < 1) return '<1 ms';
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

export function formatUsers(value: number | null | undefined): string {
  if (!isNumber(value)) return INSUFFICIENT_DATA;
  const whole = Math.round(value);
  return `${counts.format(whole)} ${whole === 1 ? 'user' : 'users'}`;
}

/** A difference of two rates in percentage points: +3.2 pp, −1.0 pp. */
export function formatPointsDelta(
  candidate: number | null | undefined,
  baseline: number | null | undefined,
): string {
  if (!isNumber(candidate) || !isNumber(baseline)) return INSUFFICIENT_DATA;
  const delta = (candidate - baseline) * 100;
  const sign = delta > 0 ? '+' : delta < 0 ? '−' : '±';
  return `${sign}${Math.abs(delta).toFixed(1)} pp`;
}

/**
 * Wilson score interval (95 %) for a proportion successes/trials, or null without trials.
 * Used where the API reports counts but no interval.
 */
export function wilsonInterval(
  successes: number,
  trials: number,
  z = 1.96,
): { low: number; high: number } | null {
  if (!(trials > 0) || successes < 0 || successes > trials) return null;
  const p = successes / trials;
  const z2 = z * z;
  const centre = (p + z2 / (2 * trials)) / (1 + z2 / trials);
  const half = (z * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials))) / (1 + z2 / trials);
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

export function formatInterval(interval: { low: number; high: number } | null): string {
  if (interval === null) return INSUFFICIENT_DATA;
  return `${formatPercent(interval.low)} – ${formatPercent(interval.high)}`;
}

export function formatDateTime(value: string | null | undefined): string {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}
