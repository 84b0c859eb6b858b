import { MantineProvider } from '@mantine/core';
import { render, screen } from '@testing-library/react';
import type { ReactElement } from 'react';
import { ApiError } from '../api/errors';
import { ChartSection } from './ChartSection';
import { MetricStat } from './MetricStat';
import { ErrorState } from './states';

const wrap = (ui: ReactElement) => render(<MantineProvider>{ui}</MantineProvider>);

describe('ChartSection', () => {
  const series = [{ key: 'rate', label: 'Rate', color: '#000' }];

  it('shows an empty state, not a blank chart, when no point has a value', () => {
    wrap(
      <ChartSection
        title="Acceptance rate"
        definition="accepted ÷ shown"
        rows={[{ key: '2025-01-01', rate: null }]}
        series={series}
        format={(v) => String(v)}
      />,
    );
    expect(screen.getByRole('region', { name: 'Acceptance rate' })).toHaveTextContent('No data');
    expect(screen.getByText('accepted ÷ shown')).toBeInTheDocument();
    expect(screen.queryByRole('table')).toBeNull();
  });

  it('offers the plotted numbers as a table', () => {
    wrap(
      <ChartSection
        title="Acceptance rate"
        definition="accepted ÷ shown"
        rows={[
          { key: '2025-01-01', rate: 0.5 },
          { key: '2025-01-02', rate: null },
        ]}
        series={series}
        format={(v) => (v === null ? 'insufficient data' : `${v * 100}%`)}
      />,
    );
    const table = screen.getByRole('table', { name: 'Acceptance rate data', hidden: true });
    expect(table).toHaveTextContent('50%');
    expect(table).toHaveTextContent('insufficient data');
  });
});

describe('MetricStat', () => {
  it('is a named group', () => {
    wrap(<MetricStat label="Active users" value="3 users" detail="1 engaged" />);
    expect(screen.getByRole('group', { name: 'Active users' })).toHaveTextContent('3 users1 engaged');
  });
});

describe('ErrorState', () => {
  it('lists the fields the API rejected', () => {
    wrap(
      <ErrorState
        error={
          new ApiError({
            status: 422,
            code: 'invalid_policy',
            message: 'document.content.actions: unknown secret type(s) nope',
            fieldErrors: [{ loc: ['content', 'actions'], msg: 'unknown secret type(s) nope', type: 'value_error' }],
            requestId: 'abc',
            path: '/api/v1/bus/x/policy',
          })
        }
      />,
    );
    const alert = screen.getByRole('alert');
    expect(alert).toHaveTextContent('The platform API answered 422');
    expect(alert).toHaveTextContent('content.actions: unknown secret type(s) nope');
    expect(alert).toHaveTextContent('invalid_policy');
    expect(alert).toHaveTextContent('abc');
  });

  it('explains an unreachable API', () => {
    wrap(<ErrorState error={new ApiError({ status: 0, code: 'network_error', message: 'The platform API cannot be reached (Failed to fetch).', path: '/x' })} />);
    expect(screen.getByRole('alert')).toHaveTextContent('Something went wrong');
    expect(screen.getByRole('alert')).toHaveTextContent('cannot be reached');
  });
});
