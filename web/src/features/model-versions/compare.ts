// Canary decision from GET /api/v1/bus/{bu_id}/metrics/compare: control (a) vs candidate (b)
// over the same period and population, with the server's Wilson intervals and Newcombe's
// interval for the difference.
import { api, call } from '../../api/client';

// As the typed client returns it (its JSON typing widens the interval tuples to arrays).
export type Comparison = Awaited<ReturnType<typeof fetchComparison>>;
export const COMPARE_PATH = '/api/v1/bus/{bu_id}/metrics/compare';

export type Verdict = { kind: 'insufficient' | 'better' | 'worse' | 'inconclusive'; message: string };

export function verdict(c: Comparison): Verdict {
  if (c.status === 'insufficient_data') {
    return {
      kind: 'insufficient',
      message: `Not enough data: each version needs at least ${c.min_shown} shown suggestions in the period (control ${c.a.shown}, candidate ${c.b.shown}).`,
    };
  }
  const d = c.difference;
  if (d.significant && d.value !== null && d.value !== undefined && d.value > 0) {
    return { kind: 'better', message: 'The candidate accepts better than the control: the 95 % interval of the difference excludes 0.' };
  }
  if (d.significant && d.value !== null && d.value !== undefined && d.value < 0) {
    return { kind: 'worse', message: 'The candidate accepts worse than the control: the 95 % interval of the difference excludes 0.' };
  }
  return { kind: 'inconclusive', message: 'No significant difference yet: the 95 % interval of the difference includes 0. Keep the canary running.' };
}

export async function fetchComparison(
  buId: string,
  query: { a: string; b: string; from: string; to: string },
) {
  return call(
    api.GET('/api/v1/bus/{bu_id}/metrics/compare', {
      params: { path: { bu_id: buId }, query },
    }),
    COMPARE_PATH,
  );
}
