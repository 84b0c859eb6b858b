// The analytics API (GET /api/v1/bus/{bu_id}/metrics, typed by the generated client) mapped
// onto what the dashboards display. Rates come with their numerator and denominator; a rate
// is null when there is nothing to divide, which the console shows as "insufficient data".
import { api, call, type Schemas } from '../../api/client';

export const METRICS_PATH = '/api/v1/bus/{bu_id}/metrics';

export type ApiMetrics = Schemas['Metrics'];
export type ApiMetricsReport = Schemas['MetricsReport'];

export const DIMENSIONS = [
  { value: 'day', label: 'Day' },
  { value: 'model_version', label: 'Model version' },
  { value: 'language', label: 'Language' },
  { value: 'ide', label: 'IDE' },
  { value: 'feature', label: 'Feature' },
  { value: 'user', label: 'User' },
] as const;
export type Dimension = (typeof DIMENSIONS)[number]['value'];

export const FILTER_FIELDS = ['model_version', 'language', 'ide', 'feature', 'user', 'group'] as const;
export type FilterField = (typeof FILTER_FIELDS)[number];

export interface MetricValues {
  suggestions_shown: number | null;
  suggestions_accepted: number | null;
  suggestions_accepted_partial: number | null;
  acceptance_rate: number | null;
  lines_shown: number | null;
  lines_accepted: number | null;
  line_acceptance_rate: number | null;
  lines_applied: number | null;
  lines_applied_completion: number | null;
  lines_applied_chat: number | null;
  lines_applied_edit: number | null;
  lines_applied_agent: number | null;
  lines_applied_other: number | null;
  edits_applied: number | null;
  edits_discarded: number | null;
  review_not_applied_rate: number | null;
  retention_30s: number | null;
  retention_2m: number | null;
  retention_10m: number | null;
  active_users: number | null;
  engaged_users: number | null;
  ttft_ms_p50: number | null;
  ttft_ms_p95: number | null;
  total_ms_p50: number | null;
  total_ms_p95: number | null;
}

export interface MetricsRow extends MetricValues {
  key: string;
}

export interface MetricsReport {
  definitionVersion: string;
  from: string;
  to: string;
  totals: MetricValues;
  rows: MetricsRow[];
  /** The server's definitions by id (METRICS.md), shown next to the charts. */
  definitions: Record<string, { version: string; definition: string }>;
}

export interface MetricsQuery {
  from: string;
  to: string;
  group_by: Dimension;
  filters: Partial<Record<FilterField, string>>;
}

export function toValues(m: ApiMetrics): MetricValues {
  const rate = (r: Schemas['Rate'] | undefined) => r?.value ?? null;
  return {
    suggestions_shown: m.shown,
    suggestions_accepted: m.accepted,
    suggestions_accepted_partial: m.accepted_partial,
    acceptance_rate: rate(m.acceptance_rate),
    lines_shown: m.lines_shown,
    lines_accepted: m.lines_accepted,
    line_acceptance_rate: rate(m.line_acceptance_rate),
    lines_applied: m.lines_applied.total,
    lines_applied_completion: m.lines_applied.completion,
    lines_applied_chat: m.lines_applied.chat,
    lines_applied_edit: m.lines_applied.edit,
    lines_applied_agent: m.lines_applied.agent,
    lines_applied_other: m.lines_applied.other,
    edits_applied: m.edits_applied,
    edits_discarded: m.edits_discarded,
    review_not_applied_rate: rate(m.review_not_applied_rate),
    retention_30s: rate(m.retention['30s']),
    retention_2m: rate(m.retention['2m']),
    retention_10m: rate(m.retention['10m']),
    active_users: m.active_users,
    engaged_users: m.engaged_users,
    ttft_ms_p50: m.latency_ttft_ms.p50 ?? null,
    ttft_ms_p95: m.latency_ttft_ms.p95 ?? null,
    total_ms_p50: m.latency_total_ms.p50 ?? null,
    total_ms_p95: m.latency_total_ms.p95 ?? null,
  };
}

export function toReport(raw: ApiMetricsReport): MetricsReport {
  const definitions: MetricsReport['definitions'] = {};
  for (const [id, d] of Object.entries(raw.definitions ?? {})) {
    definitions[id] = { version: d.version, definition: d.definition };
  }
  return {
    definitionVersion: raw.definition_version ?? 'v1',
    from: raw.date_from,
    to: raw.date_to,
    totals: toValues(raw.totals),
    rows: raw.groups.map((g) => ({ key: g.key ?? '(not reported)', ...toValues(g.metrics) })),
    definitions,
  };
}

export function metricsQueryParams(query: MetricsQuery): Record<string, string> {
  const params: Record<string, string> = { from: query.from, to: query.to, group_by: query.group_by };
  for (const [name, value] of Object.entries(query.filters)) if (value) params[name] = value;
  return params;
}

export async function fetchMetrics(buId: string, query: MetricsQuery): Promise<MetricsReport> {
  const raw = await call(
    api.GET('/api/v1/bus/{bu_id}/metrics', {
      params: { path: { bu_id: buId }, query: metricsQueryParams(query) },
    }),
    METRICS_PATH,
  );
  return toReport(raw);
}

export function isEmptyReport(report: MetricsReport): boolean {
  const t = report.totals;
  return (
    !t.suggestions_shown &&
    !t.active_users &&
    !t.lines_applied &&
    !t.edits_applied &&
    !t.edits_discarded
  );
}
