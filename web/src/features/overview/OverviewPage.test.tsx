import { screen, within } from '@testing-library/react';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { latency, metrics, rate, report } from '../../test/fixtures';
import { renderAt, signedIn } from '../../test/render';
import { OverviewPage } from './OverviewPage';

const URL = `/overview?bu=${BU.id}&from=2025-01-01&to=2025-01-02&by=language`;

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

describe('OverviewPage', () => {
  it('says the analytics API is not available instead of drawing empty charts', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => json([BU]) });
    renderAt(URL, '/overview', <OverviewPage />);
    expect(await screen.findByText('Analytics API not available')).toBeInTheDocument();
    expect(screen.queryByRole('group', { name: 'Acceptance rate (suggestions)' })).toBeNull();
  });

  it('shows a server error with its code and request id', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/metrics`]: () => apiError(500, 'internal_error', 'Internal error; see the server log'),
    });
    renderAt(URL, '/overview', <OverviewPage />);
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Could not load the metrics');
    expect(alert).toHaveTextContent('Internal error; see the server log');
    expect(alert).toHaveTextContent('req-test');
    expect(screen.queryByText('Acceptance rate (lines)')).toBeNull();
  });

  it('renders the numbers, the definitions and the breakdown, passing filters from the URL', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/metrics`]: ({ query }) =>
        query.get('group_by') === 'day'
          ? json(
              report(
                metrics({
                  shown: 4,
                  accepted: 3,
                  acceptance_rate: rate(3, 4),
                  lines_shown: 10,
                  lines_accepted: 5,
                  line_acceptance_rate: rate(5, 10),
                  lines_applied: { total: 7, completion: 5, chat: 2, edit: 0, agent: 0, other: 0 },
                  edits_applied: 1,
                  edits_discarded: 1,
                  review_not_applied_rate: rate(1, 2),
                  active_users: 2,
                  engaged_users: 1,
                  latency_ttft_ms: latency(42, 1500),
                }),
                [{ key: '2025-01-01', metrics: metrics({ shown: 4, accepted: 3, acceptance_rate: rate(3, 4) }) }],
                { definitions: { acceptance_rate: { id: 'acceptance_rate', version: 'v1', definition: 'distinct accepted completion_ids ÷ distinct shown completion_ids (server)' } } },
              ),
            )
          : json(report(metrics(), [{ key: 'python', metrics: metrics({ shown: 4, accepted: 3, acceptance_rate: rate(3, 4) }) }], { group_by: 'language' })),
    });
    renderAt(URL, '/overview', <OverviewPage />);
    const acceptance = await screen.findByRole('group', { name: 'Acceptance rate (suggestions)' });
    expect(acceptance).toHaveTextContent('75.0%');
    expect(acceptance).toHaveTextContent('3 accepted of 4 shown');
    expect(screen.getByRole('group', { name: 'Acceptance rate (lines)' })).toHaveTextContent('50.0%');
    expect(screen.getByRole('group', { name: 'Lines applied' })).toHaveTextContent('7 lines');
    expect(screen.getByRole('group', { name: 'Review-not-applied rate' })).toHaveTextContent('50.0%');
    expect(screen.getByRole('group', { name: 'Retention at 10 min' })).toHaveTextContent('insufficient data');
    expect(screen.getByRole('group', { name: 'Active users' })).toHaveTextContent('2 users');
    expect(screen.getByRole('group', { name: 'Time to first token (p50)' })).toHaveTextContent('42 ms');
    expect(screen.getByRole('group', { name: 'Time to first token (p50)' })).toHaveTextContent('p95 1.50 s');
    // The definition sits next to each chart.
    expect(screen.getAllByTestId('metric-definition')[0]).toHaveTextContent(/completion_ids \(server\)/);
    const breakdown = await screen.findByRole('table', { name: 'Breakdown by language' });
    expect(within(breakdown).getByRole('rowheader', { name: 'python' })).toBeInTheDocument();
    const metricsCalls = seen.filter((s) => s.path.endsWith('/metrics'));
    expect(metricsCalls.map((s) => s.query.get('group_by')).sort()).toEqual(['day', 'language']);
    expect(metricsCalls[0]!.query.get('from')).toBe('2025-01-01');
    expect(metricsCalls[0]!.headers.get('authorization')).toBe('Bearer cove_testkey_secret');
  });

  it('shows the METRICS.md definition next to every chart', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/metrics`]: () =>
        json(report(metrics({ shown: 2, accepted: 1, acceptance_rate: rate(1, 2) }), [
          { key: '2025-01-01', metrics: metrics({ shown: 2, accepted: 1, acceptance_rate: rate(1, 2) }) },
        ])),
    });
    renderAt(URL, '/overview', <OverviewPage />);
    // Each chart, by its heading, and the formula METRICS.md v1 gives for what it plots.
    const expected: [string, RegExp[]][] = [
      ['Acceptance rate', [/distinct accepted completion_ids ÷ distinct shown completion_ids/, /lines accepted ÷ lines shown/]],
      ['Lines applied by source', [/lines added by accepted completions \+ lines added by applied edits/, /completion \/ chat \/ agent/]],
      ['Review-not-applied rate', [/edit\.discarded ÷ \(edit\.applied \+ edit\.discarded\)/]],
      ['Retention', [/still present at T/, /÷ accepted char/]],
      ['Active and engaged users', [/any served or shown event/, /any accept or apply/]],
      ['Latency', [/time to first token and total time per completion/, /50th and 95th percentile/]],
    ];
    for (const [title, formulas] of expected) {
      const chart = (await screen.findByRole('heading', { name: title })).closest('section')!;
      const definition = within(chart).getByTestId('metric-definition');
      for (const formula of formulas) expect(definition).toHaveTextContent(formula);
    }
    expect(screen.getAllByTestId('metric-definition')).toHaveLength(expected.length);
  });

  it('says so when nothing happened in the period', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/metrics`]: () => json(report(metrics())),
    });
    renderAt(URL, '/overview', <OverviewPage />);
    expect(await screen.findByText('No usage in this period')).toBeInTheDocument();
    expect(screen.getAllByText('No data').length).toBeGreaterThan(0);
  });

  it('has no business unit to show before one exists', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => json([]) });
    renderAt('/overview', '/overview', <OverviewPage />);
    expect(await screen.findByText('No business units yet')).toBeInTheDocument();
  });
});
