// The published metric definitions (shared/METRICS.md, v1), shown next to each chart.
export const DEFINITIONS_VERSION = 'v1';

export const DEFINITIONS = {
  acceptanceRate:
    'Acceptance rate (suggestions) = distinct accepted completion_ids ÷ distinct shown completion_ids. A re-render is not a second view; partial accepts (line, word) count and are also reported separately.',
  lineAcceptanceRate: 'Acceptance rate (lines) = lines accepted ÷ lines shown.',
  linesApplied:
    'Lines applied = lines added by accepted completions + lines added by applied edits, split by source: completion / chat / agent.',
  reviewNotApplied:
    'Review-not-applied rate = edit.discarded ÷ (edit.applied + edit.discarded).',
  retention:
    'Retention@T = accepted characters still present at T (30 s, 2 min, 10 min after acceptance) ÷ accepted characters.',
  users:
    'Active users: users with any served or shown event in the period. Engaged users: users with any accept or apply.',
  latency:
    'Latency: gateway-measured time to first token and total time per completion, 50th and 95th percentile.',
} as const;

/**
 * The server's definition of a metric (it serves them with every report), else the one
 * published in METRICS.md that the console ships.
 */
export function definitionFor(
  report: { definitions: Record<string, { version: string; definition: string }> },
  ids: string[],
  fallback: string,
): string {
  const found = ids.map((id) => report.definitions[id]).filter((d) => d !== undefined);
  return found.length > 0 ? found.map((d) => d.definition).join(' · ') : fallback;
}
