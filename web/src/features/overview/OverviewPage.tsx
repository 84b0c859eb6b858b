import { Alert, Button, Code, Group, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useQuery } from '@tanstack/react-query';
import { downloadFile, type BusinessUnit } from '../../api/client';
import { ApiError } from '../../api/errors';
import { queryKeys } from '../../api/queries';
import { ChartSection, color, type ChartRow } from '../../components/ChartSection';
import { WithBu } from '../../components/CurrentBu';
import { MetricStat } from '../../components/MetricStat';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState, NotAvailableState } from '../../components/states';
import {
  formatCount,
  formatLatencyMs,
  formatLines,
  formatPercent,
  formatUsers,
} from '../../lib/format';
import { DEFINITIONS, DEFINITIONS_VERSION, definitionFor } from './definitions';
import { FiltersForm } from './FiltersForm';
import { useOverviewFilters, type OverviewFilters } from './filters';
import {
  DIMENSIONS,
  METRICS_PATH,
  fetchMetrics,
  isEmptyReport,
  metricsQueryParams,
  type MetricsQuery,
  type MetricsReport,
  type MetricValues,
} from './metrics';

function useMetrics(buId: string, query: MetricsQuery) {
  const params = metricsQueryParams(query);
  return useQuery({
    queryKey: queryKeys.metrics(buId, params),
    queryFn: () => fetchMetrics(buId, query),
  });
}

function toRows(report: MetricsReport, fields: (keyof MetricValues)[]): ChartRow[] {
  return report.rows.map((row) => {
    const out: ChartRow = { key: row.key };
    for (const field of fields) out[field] = row[field];
    return out;
  });
}

const percentAxis = (v: number) => `${Math.round(v * 100)}%`;

export function Headlines({ totals }: { totals: MetricValues }) {
  return (
    <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }} spacing="sm">
      <MetricStat
        label="Acceptance rate (suggestions)"
        value={formatPercent(totals.acceptance_rate)}
        detail={`${formatCount(totals.suggestions_accepted)} accepted of ${formatCount(totals.suggestions_shown)} shown${
          totals.suggestions_accepted_partial !== null
            ? ` · ${formatCount(totals.suggestions_accepted_partial)} partial`
            : ''
        }`}
      />
      <MetricStat
        label="Acceptance rate (lines)"
        value={formatPercent(totals.line_acceptance_rate)}
        detail={`${formatLines(totals.lines_accepted)} accepted of ${formatLines(totals.lines_shown)} shown`}
      />
      <MetricStat
        label="Lines applied"
        value={formatLines(totals.lines_applied)}
        detail={`completion ${formatCount(totals.lines_applied_completion)} · chat ${formatCount(totals.lines_applied_chat)} · edit ${formatCount(totals.lines_applied_edit)} · agent ${formatCount(totals.lines_applied_agent)}`}
      />
      <MetricStat
        label="Review-not-applied rate"
        value={formatPercent(totals.review_not_applied_rate)}
        detail={`${formatCount(totals.edits_discarded)} discarded, ${formatCount(totals.edits_applied)} applied`}
      />
      <MetricStat
        label="Retention at 10 min"
        value={formatPercent(totals.retention_10m)}
        detail={`30 s ${formatPercent(totals.retention_30s)} · 2 min ${formatPercent(totals.retention_2m)}`}
      />
      <MetricStat
        label="Active users"
        value={formatUsers(totals.active_users)}
        detail={`${formatUsers(totals.engaged_users)} engaged`}
      />
      <MetricStat
        label="Time to first token (p50)"
        value={formatLatencyMs(totals.ttft_ms_p50)}
        detail={`p95 ${formatLatencyMs(totals.ttft_ms_p95)}`}
      />
      <MetricStat
        label="Total latency (p50)"
        value={formatLatencyMs(totals.total_ms_p50)}
        detail={`p95 ${formatLatencyMs(totals.total_ms_p95)}`}
      />
    </SimpleGrid>
  );
}

function TimeSeries({ report }: { report: MetricsReport }) {
  return (
    <SimpleGrid cols={{ base: 1, lg: 2 }} spacing="sm">
      <ChartSection
        title="Acceptance rate"
        definition={definitionFor(report, ['acceptance_rate', 'line_acceptance_rate'], `${DEFINITIONS.acceptanceRate} ${DEFINITIONS.lineAcceptanceRate}`)}
        rows={toRows(report, ['acceptance_rate', 'line_acceptance_rate'])}
        series={[
          { key: 'acceptance_rate', label: 'Suggestions', color: color(0) },
          { key: 'line_acceptance_rate', label: 'Lines', color: color(1) },
        ]}
        format={(v) => formatPercent(v)}
        axisFormat={percentAxis}
        domain={[0, 1]}
      />
      <ChartSection
        title="Lines applied by source"
        definition={definitionFor(report, ['lines_applied'], DEFINITIONS.linesApplied)}
        kind="stacked-bar"
        rows={toRows(report, [
          'lines_applied_completion',
          'lines_applied_chat',
          'lines_applied_edit',
          'lines_applied_agent',
          'lines_applied_other',
        ])}
        series={[
          { key: 'lines_applied_completion', label: 'Completion', color: color(0) },
          { key: 'lines_applied_chat', label: 'Chat', color: color(2) },
          { key: 'lines_applied_edit', label: 'Edit', color: color(4) },
          { key: 'lines_applied_agent', label: 'Agent', color: color(3) },
          { key: 'lines_applied_other', label: 'Other', color: color(5) },
        ]}
        format={(v) => formatLines(v)}
      />
      <ChartSection
        title="Review-not-applied rate"
        definition={definitionFor(report, ['review_not_applied_rate', 'review_not_applied'], DEFINITIONS.reviewNotApplied)}
        rows={toRows(report, ['review_not_applied_rate'])}
        series={[{ key: 'review_not_applied_rate', label: 'Not applied', color: color(1) }]}
        format={(v) => formatPercent(v)}
        axisFormat={percentAxis}
        domain={[0, 1]}
      />
      <ChartSection
        title="Retention"
        definition={definitionFor(report, ['retention'], DEFINITIONS.retention)}
        rows={toRows(report, ['retention_30s', 'retention_2m', 'retention_10m'])}
        series={[
          { key: 'retention_30s', label: '30 s', color: color(0) },
          { key: 'retention_2m', label: '2 min', color: color(2) },
          { key: 'retention_10m', label: '10 min', color: color(3) },
        ]}
        format={(v) => formatPercent(v)}
        axisFormat={percentAxis}
        domain={[0, 1]}
      />
      <ChartSection
        title="Active and engaged users"
        definition={definitionFor(report, ['active_users', 'engaged_users'], DEFINITIONS.users)}
        rows={toRows(report, ['active_users', 'engaged_users'])}
        series={[
          { key: 'active_users', label: 'Active', color: color(0) },
          { key: 'engaged_users', label: 'Engaged', color: color(2) },
        ]}
        format={(v) => formatUsers(v)}
      />
      <ChartSection
        title="Latency"
        definition={definitionFor(report, ['latency_ttft_ms', 'latency_total_ms'], DEFINITIONS.latency)}
        rows={toRows(report, ['ttft_ms_p50', 'ttft_ms_p95', 'total_ms_p50', 'total_ms_p95'])}
        series={[
          { key: 'ttft_ms_p50', label: 'First token p50', color: color(0) },
          { key: 'ttft_ms_p95', label: 'First token p95', color: color(1) },
          { key: 'total_ms_p50', label: 'Total p50', color: color(2) },
          { key: 'total_ms_p95', label: 'Total p95', color: color(3) },
        ]}
        format={(v) => formatLatencyMs(v)}
        axisFormat={(v) => `${v} ms`}
      />
    </SimpleGrid>
  );
}

export function BreakdownTable({
  report,
  dimension,
}: {
  report: MetricsReport;
  dimension: string;
}) {
  const label = DIMENSIONS.find((d) => d.value === dimension)?.label ?? dimension;
  if (report.rows.length === 0) {
    return <EmptyState title={`No data by ${label.toLowerCase()}`}>Nothing matched the filters in this period.</EmptyState>;
  }
  return (
    <Table.ScrollContainer minWidth={900}>
      <Table striped withTableBorder aria-label={`Breakdown by ${label.toLowerCase()}`}>
        <Table.Thead>
          <Table.Tr>
            <Table.Th scope="col">{label}</Table.Th>
            <Table.Th scope="col">Acceptance (suggestions)</Table.Th>
            <Table.Th scope="col">Acceptance (lines)</Table.Th>
            <Table.Th scope="col">Shown</Table.Th>
            <Table.Th scope="col">Lines applied</Table.Th>
            <Table.Th scope="col">Review-not-applied</Table.Th>
            <Table.Th scope="col">Active / engaged users</Table.Th>
            <Table.Th scope="col">TTFT p50 / p95</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {report.rows.map((row) => (
            <Table.Tr key={row.key}>
              <Table.Th scope="row">{row.key}</Table.Th>
              <Table.Td>{formatPercent(row.acceptance_rate)}</Table.Td>
              <Table.Td>{formatPercent(row.line_acceptance_rate)}</Table.Td>
              <Table.Td>{formatCount(row.suggestions_shown)}</Table.Td>
              <Table.Td>{formatLines(row.lines_applied)}</Table.Td>
              <Table.Td>{formatPercent(row.review_not_applied_rate)}</Table.Td>
              <Table.Td>
                {formatCount(row.active_users)} / {formatCount(row.engaged_users)}
              </Table.Td>
              <Table.Td>
                {formatLatencyMs(row.ttft_ms_p50)} / {formatLatencyMs(row.ttft_ms_p95)}
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

export function AnalyticsError({ error }: { error: unknown }) {
  if (error instanceof ApiError && error.isMissingRoute) {
    return (
      <NotAvailableState title="Analytics API not available" endpoint={`GET ${METRICS_PATH}`}>
        The dashboards appear as soon as the platform serves the analytics API; no numbers are
        shown until then rather than empty charts.
      </NotAvailableState>
    );
  }
  return <ErrorState error={error} title="Could not load the metrics" />;
}

function Dashboards({ bu, filters }: { bu: BusinessUnit; filters: OverviewFilters }) {
  const base = { from: filters.from, to: filters.to, filters: filters.filters };
  const series = useMetrics(bu.id, { ...base, group_by: 'day' });
  const breakdown = useMetrics(bu.id, { ...base, group_by: filters.by });

  if (series.isPending) return <LoadingState label="Loading metrics…" />;
  if (series.isError) return <AnalyticsError error={series.error} />;
  const report = series.data;
  return (
    <Stack gap="md">
      <Group justify="space-between">
        <Text size="xs" c="dimmed">
          Definitions {report.definitionVersion || DEFINITIONS_VERSION} (METRICS.md) · {report.from} to{' '}
          {report.to} (UTC)
        </Text>
        <Button
          size="xs"
          variant="default"
          onClick={() => {
            downloadFile(
              `/api/v1/bus/${bu.id}/metrics.csv`,
              metricsQueryParams({ ...base, group_by: 'day' }),
              `cove-metrics-${bu.slug}-${filters.from}-${filters.to}.csv`,
            ).catch((err: unknown) =>
              notifications.show({ color: 'red', title: 'Export failed', message: String((err as Error).message ?? err) }),
            );
          }}
        >
          Export CSV
        </Button>
      </Group>
      {isEmptyReport(report) ? (
        <Alert color="gray" variant="light" role="status" title="No usage in this period">
          No completions or IDE events were recorded for {bu.slug} between {filters.from} and{' '}
          {filters.to}. Point an IDE at the gateway, or widen the date range.
        </Alert>
      ) : null}
      <section aria-label="Headline metrics">
        <Headlines totals={report.totals} />
      </section>
      <TimeSeries report={report} />
      <section aria-labelledby="breakdown-heading">
        <Stack gap="xs">
          <Title order={2} size="h4" id="breakdown-heading">
            Breakdown by {DIMENSIONS.find((d) => d.value === filters.by)?.label.toLowerCase()}
          </Title>
          {breakdown.isPending ? (
            <LoadingState label="Loading the breakdown…" />
          ) : breakdown.isError ? (
            <AnalyticsError error={breakdown.error} />
          ) : (
            <BreakdownTable report={breakdown.data} dimension={filters.by} />
          )}
        </Stack>
      </section>
    </Stack>
  );
}

export function OverviewPage() {
  const [filters, setFilters] = useOverviewFilters();
  return (
    <Page
      title="Overview"
      description={
        <>
          Acceptance, lines applied, retention, users and latency of the business unit, computed
          from raw IDE and gateway events by the definitions in METRICS.md ({DEFINITIONS_VERSION}).
          Filters are kept in the address, e.g. <Code>?from=…&amp;to=…&amp;language=python</Code>.
        </>
      }
    >
      <FiltersForm value={filters} onApply={setFilters} />
      <WithBu>{(bu) => <Dashboards bu={bu} filters={filters} />}</WithBu>
    </Page>
  );
}
