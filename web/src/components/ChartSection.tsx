// A chart with its metric definition beside it, an empty state instead of a blank plot, and
// the same numbers as a table for keyboard and screen-reader users.
import { Card, Stack, Table, Text, Title } from '@mantine/core';
import { useId } from 'react';
import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts';
import { EmptyState } from './states';

export interface ChartSeries {
  key: string;
  label: string;
  color: string;
}

export type ChartRow = { key: string } & Record<string, number | string | null>;

const PALETTE = ['#1c7ed6', '#e8590c', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599'];
export function color(index: number): string {
  return PALETTE[index % PALETTE.length]!;
}

export function hasValues(rows: ChartRow[], series: ChartSeries[]): boolean {
  return rows.some((row) => series.some((s) => typeof row[s.key] === 'number'));
}

export function ChartSection({
  title,
  definition,
  rows,
  series,
  kind = 'line',
  format,
  emptyText = 'No events in this period. Send completions and IDE events through the gateway, or widen the date range.',
  axisFormat,
  domain,
}: {
  title: string;
  definition: string;
  rows: ChartRow[];
  series: ChartSeries[];
  kind?: 'line' | 'stacked-bar';
  format: (value: number | null) => string;
  emptyText?: string;
  axisFormat?: (value: number) => string;
  /** Fixed value range, e.g. [0, 1] for rates, so an all-zero series does not stretch the axis. */
  domain?: [number, number];
}) {
  const headingId = useId();
  const present = hasValues(rows, series);
  return (
    <Card withBorder padding="md" component="section" aria-labelledby={headingId}>
      <Stack gap="xs">
        <Title order={2} size="h4" id={headingId}>
          {title}
        </Title>
        <Text size="xs" c="dimmed" data-testid="metric-definition">
          {definition}
        </Text>
        {present ? (
          <>
            <div style={{ width: '100%', height: 240 }} aria-hidden>
              <ResponsiveContainer width="100%" height="100%" initialDimension={{ width: 600, height: 240 }}>
                {kind === 'line' ? (
                  <LineChart data={rows} margin={{ top: 8, right: 16, bottom: 0, left: 0 }}>
                    <CartesianGrid strokeDasharray="3 3" />
                    <XAxis dataKey="key" fontSize={12} />
                    <YAxis fontSize={12} tickFormatter={axisFormat} width={64} {...(domain ? { domain } : {})} />
                    <Tooltip formatter={(v) => format(typeof v === 'number' ? v : null)} />
                    <Legend />
                    {series.map((s) => (
                      <Line
                        key={s.key}
                        type="monotone"
                        dataKey={s.key}
                        name={s.label}
                        stroke={s.color}
                        connectNulls
                        isAnimationActive={false}
                      />
                    ))}
                  </LineChart>
                ) : (
                  <BarChart data={rows} margin={{ top: 8, right: 16, bottom: 0, left: 0 }}>
                    <CartesianGrid strokeDasharray="3 3" />
                    <XAxis dataKey="key" fontSize={12} />
                    <YAxis fontSize={12} tickFormatter={axisFormat} width={64} {...(domain ? { domain } : {})} />
                    <Tooltip formatter={(v) => format(typeof v === 'number' ? v : null)} />
                    <Legend />
                    {series.map((s) => (
                      <Bar
                        key={s.key}
                        dataKey={s.key}
                        name={s.label}
                        stackId="stack"
                        fill={s.color}
                        isAnimationActive={false}
                      />
                    ))}
                  </BarChart>
                )}
              </ResponsiveContainer>
            </div>
            <details>
              <summary style={{ cursor: 'pointer', fontSize: 13 }}>Show data: {title}</summary>
              <Table striped withTableBorder mt="xs" aria-label={`${title} data`}>
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th scope="col">Period</Table.Th>
                    {series.map((s) => (
                      <Table.Th scope="col" key={s.key}>
                        {s.label}
                      </Table.Th>
                    ))}
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {rows.map((row) => (
                    <Table.Tr key={row.key}>
                      <Table.Th scope="row">{row.key}</Table.Th>
                      {series.map((s) => {
                        const value = row[s.key];
                        return (
                          <Table.Td key={s.key}>
                            {format(typeof value === 'number' ? value : null)}
                          </Table.Td>
                        );
                      })}
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </details>
          </>
        ) : (
          <EmptyState title="No data">{emptyText}</EmptyState>
        )}
      </Stack>
    </Card>
  );
}
