import type { Schemas } from '../api/client';

type Metrics = Schemas['Metrics'];
type Rate = Schemas['Rate'];

export function rate(numerator: number, denominator: number): Rate {
  return { numerator, denominator, value: denominator > 0 ? numerator / denominator : null };
}

const latency = (p50: number | null = null, p95: number | null = null) => ({
  count: p50 === null ? 0 : 1,
  p50,
  p95,
  mean: p50,
});

/** A Metrics object as the analytics API returns it: zeros unless given. */
export function metrics(over: Partial<Metrics> = {}): Metrics {
  const base: Metrics = {
    served: 0,
    shown: 0,
    accepted: 0,
    accepted_full: 0,
    accepted_partial: 0,
    accepted_line: 0,
    accepted_word: 0,
    rejected: 0,
    acceptance_rate: rate(0, 0),
    acceptance_rate_full: rate(0, 0),
    lines_shown: 0,
    lines_accepted: 0,
    line_acceptance_rate: rate(0, 0),
    chars_accepted: 0,
    lines_applied: { total: 0, completion: 0, chat: 0, edit: 0, agent: 0, other: 0 },
    edits_proposed: 0,
    edits_applied: 0,
    edits_discarded: 0,
    review_not_applied_rate: rate(0, 0),
    retention: { '30s': rate(0, 0), '2m': rate(0, 0), '10m': rate(0, 0) },
    active_users: 0,
    engaged_users: 0,
    latency_ttft_ms: latency(),
    latency_total_ms: latency(),
  };
  return { ...base, ...over };
}

export { latency };

export function report(
  totals: Metrics,
  groups: { key: string | null; metrics: Metrics }[] = [],
  extra: Partial<Schemas['MetricsReport']> = {},
): Schemas['MetricsReport'] {
  return {
    definition_version: 'v1',
    bu_id: '11111111-1111-4111-8111-111111111111',
    date_from: '2025-01-01',
    date_to: '2025-01-02',
    group_by: 'day',
    filters: {},
    totals,
    groups,
    definitions: {},
    ...extra,
  } as Schemas['MetricsReport'];
}
