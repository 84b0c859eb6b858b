import { MantineProvider } from '@mantine/core';
import { render, screen } from '@testing-library/react';
import { metrics, rate } from '../../test/fixtures';
import { verdict, type Comparison } from './compare';
import { ComparisonTable } from './ModelVersionsPage';

function side(name: string, shown: number, accepted: number, ci: [number, number] | null) {
  return {
    model_version: name,
    shown,
    accepted,
    acceptance_rate: shown > 0 ? accepted / shown : null,
    acceptance_rate_ci95: ci,
    lines_shown: 0,
    lines_accepted: 0,
    line_acceptance_rate: null,
    metrics: metrics({ shown, accepted, acceptance_rate: rate(accepted, shown) }),
  };
}

function comparison(over: Partial<Comparison>): Comparison {
  return {
    definition_version: 'v1',
    bu_id: 'x',
    date_from: '2025-01-01',
    date_to: '2025-01-14',
    filters: {},
    status: 'ok',
    min_shown: 100,
    a: side('base', 1000, 250, [0.224, 0.277]),
    b: side('base+payments', 1000, 400, [0.37, 0.43]),
    difference: { metric: 'acceptance_rate', value: 0.15, ci95: [0.11, 0.19], method: 'newcombe', significant: true },
    ...over,
  } as Comparison;
}

describe('canary verdict', () => {
  it('needs enough data for both versions', () => {
    const v = verdict(comparison({ status: 'insufficient_data', a: side('base', 12, 3, null) }));
    expect(v.kind).toBe('insufficient');
    expect(v.message).toMatch(/at least 100 shown suggestions .*control 12, candidate 1000/);
  });
  it('calls a clear win, a clear loss and a tie', () => {
    expect(verdict(comparison({})).kind).toBe('better');
    expect(
      verdict(comparison({ difference: { metric: 'acceptance_rate', value: -0.1, ci95: [-0.14, -0.06], method: 'newcombe', significant: true } })).kind,
    ).toBe('worse');
    expect(
      verdict(comparison({ difference: { metric: 'acceptance_rate', value: 0.01, ci95: [-0.03, 0.05], method: 'newcombe', significant: false } })).kind,
    ).toBe('inconclusive');
  });
});

describe('ComparisonTable', () => {
  it('puts the two versions side by side with the difference and its interval', () => {
    render(
      <MantineProvider>
        <ComparisonTable comparison={comparison({})} />
      </MantineProvider>,
    );
    const table = screen.getByRole('table', { name: 'Model version comparison' });
    expect(table).toHaveTextContent('Control: base');
    expect(table).toHaveTextContent('Candidate: base+payments');
    expect(table).toHaveTextContent('25.0%');
    expect(table).toHaveTextContent('40.0%');
    expect(table).toHaveTextContent('22.4% – 27.7%');
    expect(table).toHaveTextContent('+15.0 pp (+11.0 pp to +19.0 pp)');
    expect(screen.getByRole('status')).toHaveTextContent('better than the control');
  });

  it('says not enough data rather than a rate of nothing', () => {
    render(
      <MantineProvider>
        <ComparisonTable
          comparison={comparison({
            status: 'insufficient_data',
            a: side('a', 0, 0, null),
            b: side('b', 0, 0, null),
            difference: { metric: 'acceptance_rate', value: null, ci95: null, method: 'newcombe', significant: null },
          })}
        />
      </MantineProvider>,
    );
    expect(screen.getByRole('status')).toHaveTextContent('Not enough data');
    expect(screen.getByRole('table')).toHaveTextContent('insufficient data');
  });
});
