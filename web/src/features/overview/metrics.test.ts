import { latency, metrics, rate, report } from '../../test/fixtures';
import { definitionFor } from './definitions';
import { isEmptyReport, metricsQueryParams, toReport, toValues } from './metrics';

describe('toValues', () => {
  it('maps the API metrics onto the dashboard values', () => {
    const v = toValues(
      metrics({
        shown: 4,
        accepted: 1,
        accepted_partial: 1,
        acceptance_rate: rate(1, 4),
        lines_applied: { total: 9, completion: 3, chat: 2, edit: 4, agent: 0, other: 0 },
        retention: { '30s': rate(9, 10), '2m': rate(8, 10), '10m': rate(0, 0) },
        latency_ttft_ms: latency(12.5, 80),
      }),
    );
    expect(v.acceptance_rate).toBe(0.25);
    expect(v.suggestions_accepted_partial).toBe(1);
    expect(v.lines_applied).toBe(9);
    expect(v.lines_applied_edit).toBe(4);
    expect(v.retention_30s).toBe(0.9);
    expect(v.retention_10m).toBeNull();
    expect(v.ttft_ms_p50).toBe(12.5);
    expect(v.total_ms_p95).toBeNull();
  });

  it('keeps a rate with nothing to divide as null (shown as insufficient data)', () => {
    expect(toValues(metrics()).acceptance_rate).toBeNull();
    expect(toValues(metrics()).review_not_applied_rate).toBeNull();
  });
});

describe('toReport', () => {
  it('reads totals, groups and definitions', () => {
    const r = toReport(
      report(metrics({ shown: 2 }), [
        { key: '2025-01-01', metrics: metrics({ shown: 2 }) },
        { key: null, metrics: metrics() },
      ], { definitions: { acceptance_rate: { id: 'acceptance_rate', version: 'v1', definition: 'server text' } } }),
    );
    expect(r.rows.map((row) => row.key)).toEqual(['2025-01-01', '(not reported)']);
    expect(r.totals.suggestions_shown).toBe(2);
    expect(definitionFor(r, ['acceptance_rate'], 'fallback')).toBe('server text');
    expect(definitionFor(r, ['latency'], 'fallback')).toBe('fallback');
    expect(isEmptyReport(r)).toBe(false);
  });

  it('recognises an empty period', () => {
    expect(isEmptyReport(toReport(report(metrics())))).toBe(true);
  });
});

describe('metricsQueryParams', () => {
  it('sends only the filters that are set', () => {
    expect(
      metricsQueryParams({ from: '2025-01-01', to: '2025-01-07', group_by: 'language', filters: { ide: 'vscode', user: '' } }),
    ).toEqual({ from: '2025-01-01', to: '2025-01-07', group_by: 'language', ide: 'vscode' });
  });
});
