import {
  Alert,
  Button,
  Card,
  Group,
  Modal,
  NativeSelect,
  NumberInput,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { useSearchParams } from 'react-router-dom';
import { api, call, type BusinessUnit } from '../../api/client';
import { useBuModels, useDeployments, useRelease } from '../../api/queries';
import { WithBu } from '../../components/CurrentBu';
import { FormError, fieldError } from '../../components/FormError';
import { MetricStat } from '../../components/MetricStat';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState } from '../../components/states';
import { daysAgo, isIsoDay } from '../../lib/dates';
import {
  formatCount,
  formatDateTime,
  formatInterval,
  formatLatencyMs,
  formatLines,
  formatPercent,
  formatPointsDelta,
  formatUsers,
} from '../../lib/format';
import { DEFINITIONS } from '../overview/definitions';
import { validateRange } from '../overview/filters';
import { AnalyticsError } from '../overview/OverviewPage';
import { fetchMetrics, toValues, type MetricValues } from '../overview/metrics';
import { fetchComparison, verdict, type Comparison } from './compare';

type Side = Comparison['a'];

interface Row {
  label: string;
  definition?: string;
  show: (side: Side, values: MetricValues) => string;
}

const ROWS: Row[] = [
  {
    label: 'Acceptance rate (suggestions)',
    definition: DEFINITIONS.acceptanceRate,
    show: (s) => formatPercent(s.acceptance_rate),
  },
  {
    label: '95 % interval',
    show: (s) =>
      formatInterval(s.acceptance_rate_ci95 ? { low: s.acceptance_rate_ci95[0]!, high: s.acceptance_rate_ci95[1]! } : null),
  },
  { label: 'Suggestions shown', show: (s) => formatCount(s.shown) },
  { label: 'Suggestions accepted', show: (s) => formatCount(s.accepted) },
  {
    label: 'Acceptance rate (lines)',
    definition: DEFINITIONS.lineAcceptanceRate,
    show: (s) => formatPercent(s.line_acceptance_rate),
  },
  { label: 'Lines applied', definition: DEFINITIONS.linesApplied, show: (_, v) => formatLines(v.lines_applied) },
  { label: 'Retention at 10 min', definition: DEFINITIONS.retention, show: (_, v) => formatPercent(v.retention_10m) },
  { label: 'Active users', definition: DEFINITIONS.users, show: (_, v) => formatUsers(v.active_users) },
  { label: 'Time to first token p50', definition: DEFINITIONS.latency, show: (_, v) => formatLatencyMs(v.ttft_ms_p50) },
  { label: 'Time to first token p95', show: (_, v) => formatLatencyMs(v.ttft_ms_p95) },
];

export function ComparisonTable({ comparison }: { comparison: Comparison }) {
  const result = verdict(comparison);
  const color = { insufficient: 'gray', better: 'green', worse: 'red', inconclusive: 'yellow' }[result.kind];
  const a = toValues(comparison.a.metrics);
  const b = toValues(comparison.b.metrics);
  const d = comparison.difference;
  return (
    <Stack gap="sm">
      <Alert color={color} variant="light" role="status" title="Canary decision">
        {result.message}
      </Alert>
      <Table withTableBorder striped aria-label="Model version comparison">
        <Table.Thead>
          <Table.Tr>
            <Table.Th scope="col">Metric</Table.Th>
            <Table.Th scope="col">Control: {comparison.a.model_version}</Table.Th>
            <Table.Th scope="col">Candidate: {comparison.b.model_version}</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {ROWS.map((row) => (
            <Table.Tr key={row.label}>
              <Table.Th scope="row">
                {row.label}
                {row.definition ? (
                  <Text size="xs" c="dimmed" fw={400}>
                    {row.definition}
                  </Text>
                ) : null}
              </Table.Th>
              <Table.Td>{row.show(comparison.a, a)}</Table.Td>
              <Table.Td>{row.show(comparison.b, b)}</Table.Td>
            </Table.Tr>
          ))}
          <Table.Tr>
            <Table.Th scope="row">
              Difference in {d.metric.replace(/_/g, ' ')} (candidate − control)
              <Text size="xs" c="dimmed" fw={400}>
                95 % interval by {d.method}
              </Text>
            </Table.Th>
            <Table.Td colSpan={2}>
              {formatPointsDelta(d.value ?? null, d.value === null || d.value === undefined ? null : 0)}
              {d.ci95 ? ` (${formatPointsDelta(d.ci95[0]!, 0)} to ${formatPointsDelta(d.ci95[1]!, 0)})` : ''}
            </Table.Td>
          </Table.Tr>
        </Table.Tbody>
      </Table>
    </Stack>
  );
}

type Release = Awaited<ReturnType<typeof fetchRelease>>;

async function fetchRelease(buId: string) {
  return call(api.GET('/api/v1/bus/{bu_id}/release', { params: { path: { bu_id: buId } } }), `/api/v1/bus/${buId}/release`);
}

function useVersionOptions(bu: BusinessUnit, release: Release | undefined, from: string, to: string) {
  const models = useBuModels(bu.id);
  const deployments = useDeployments(bu.id);
  const seen = useQuery({
    queryKey: ['bus', bu.id, 'model-versions', from, to],
    queryFn: () => fetchMetrics(bu.id, { from, to, group_by: 'model_version', filters: {} }),
  });
  return Array.from(
    new Set(
      [
        release?.stable,
        release?.canary,
        ...(models.data ?? []).map((m) => m.name),
        ...(deployments.data ?? []).map((d) => d.model),
        ...(seen.data?.rows ?? []).map((r) => r.key).filter((k) => k !== '(not reported)'),
      ].filter((v): v is string => typeof v === 'string' && v !== ''),
    ),
  );
}

function ReleaseCard({ bu, release }: { bu: BusinessUnit; release: Release }) {
  return (
    <Card withBorder padding="md" component="section" aria-labelledby="release-heading">
      <Stack gap="xs">
        <Title order={2} size="h4" id="release-heading">
          Release of {bu.slug}
        </Title>
        {release.stable === null ? (
          <Text size="sm" c="dimmed">
            No release yet: requests go to the model they name. Set a stable version (and a
            canary) below.
          </Text>
        ) : (
          <SimpleGrid cols={{ base: 1, sm: 3 }} spacing="sm">
            <MetricStat label="Stable" value={release.stable} detail={release.previous_stable ? `rollback restores ${release.previous_stable}` : 'no previous version'} />
            <MetricStat
              label="Canary"
              value={release.canary ?? 'none'}
              detail={
                release.canary
                  ? `${release.canary_percent}% of users${release.canary_groups.length > 0 ? ` + groups ${release.canary_groups.join(', ')}` : ''}`
                  : 'everyone gets the stable version'
              }
            />
            <MetricStat
              label="Release version"
              value={String(release.version)}
              detail={release.updated_by ? `by ${release.updated_by}, ${formatDateTime(release.updated_at)}` : undefined}
            />
          </SimpleGrid>
        )}
        {release.history.length > 0 ? (
          <details>
            <summary style={{ cursor: 'pointer', fontSize: 13 }}>History ({release.history.length})</summary>
            <Table withTableBorder mt="xs" aria-label="Release history">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th scope="col">Version</Table.Th>
                  <Table.Th scope="col">Action</Table.Th>
                  <Table.Th scope="col">Stable</Table.Th>
                  <Table.Th scope="col">Canary</Table.Th>
                  <Table.Th scope="col">By</Table.Th>
                  <Table.Th scope="col">When</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {release.history.map((h) => (
                  <Table.Tr key={h.version}>
                    <Table.Td>{h.version}</Table.Td>
                    <Table.Td>{h.action}</Table.Td>
                    <Table.Td>{h.stable ?? '—'}</Table.Td>
                    <Table.Td>{h.canary ? `${h.canary} (${h.canary_percent}%)` : '—'}</Table.Td>
                    <Table.Td>{h.actor}</Table.Td>
                    <Table.Td>{formatDateTime(h.created_at)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </details>
        ) : null}
      </Stack>
    </Card>
  );
}

function ReleaseActions({ bu, release, options }: { bu: BusinessUnit; release: Release; options: string[] }) {
  const client = useQueryClient();
  const [confirm, setConfirm] = useState<'promote' | 'rollback' | null>(null);
  const [form, setForm] = useState({
    stable: release.stable ?? options[0] ?? '',
    canary: release.canary ?? '',
    percent: release.canary_percent as number | string,
    groups: release.canary_groups.join(', '),
  });
  const refresh = () => client.invalidateQueries({ queryKey: ['bus', bu.id, 'release'] });
  const step = useMutation({
    mutationFn: (action: 'promote' | 'rollback') =>
      action === 'promote'
        ? call(
            api.POST('/api/v1/bus/{bu_id}/release/promote', { params: { path: { bu_id: bu.id } }, body: { version: release.version } }),
            `/api/v1/bus/${bu.id}/release/promote`,
          )
        : call(
            api.POST('/api/v1/bus/{bu_id}/release/rollback', { params: { path: { bu_id: bu.id } }, body: { version: release.version } }),
            `/api/v1/bus/${bu.id}/release/rollback`,
          ),
    onSuccess: async (saved, action) => {
      await refresh();
      setConfirm(null);
      notifications.show({ color: 'green', message: `${action === 'promote' ? 'Promoted' : 'Rolled back'}: ${saved.stable} is stable` });
    },
  });
  const set = useMutation({
    mutationFn: () =>
      call(
        api.PUT('/api/v1/bus/{bu_id}/release', {
          params: { path: { bu_id: bu.id } },
          body: {
            stable: form.stable,
            canary: form.canary || null,
            canary_percent: form.canary ? Number(form.percent) || 0 : 0,
            canary_groups: form.canary
              ? form.groups.split(',').map((g) => g.trim()).filter(Boolean)
              : [],
            version: release.version,
          },
        }),
        `/api/v1/bus/${bu.id}/release`,
      ),
    onSuccess: async () => {
      await refresh();
      notifications.show({ color: 'green', message: 'Release saved' });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    set.mutate();
  };
  const canPromote = release.canary !== null;
  const canRollback = release.previous_stable !== null || release.canary !== null;
  return (
    <Stack gap="md">
      <section aria-labelledby="promote-heading">
        <Stack gap="xs">
          <Title order={2} size="h4" id="promote-heading">
            Promote or roll back
          </Title>
          <Group>
            <Button disabled={!canPromote} onClick={() => setConfirm('promote')}>
              Promote {release.canary ?? 'canary'}
            </Button>
            <Button variant="default" color="red" disabled={!canRollback} onClick={() => setConfirm('rollback')}>
              Roll back{release.previous_stable ? ` to ${release.previous_stable}` : ''}
            </Button>
          </Group>
          <Text size="sm" c="dimmed" id="promote-why">
            {canPromote
              ? `Promote makes ${release.canary} the stable version for everyone. Roll back restores the previous stable version and drops the canary.`
              : 'There is no canary to promote: start one below.'}
          </Text>
          {step.error && confirm === null ? <FormError error={step.error} /> : null}
        </Stack>
      </section>
      <Modal
        opened={confirm !== null}
        onClose={() => {
          step.reset();
          setConfirm(null);
        }}
        title={confirm === 'promote' ? `Promote ${release.canary}?` : 'Roll back?'}
      >
        <Stack gap="sm">
          <Text size="sm">
            {confirm === 'promote'
              ? `${release.canary} becomes the stable version for every developer of ${bu.slug}; ${release.stable} is remembered for a rollback.`
              : `Every developer of ${bu.slug} goes back to ${release.previous_stable ?? release.stable} and the canary is dropped.`}
          </Text>
          <FormError error={step.error} />
          <Group justify="flex-end">
            <Button variant="default" onClick={() => setConfirm(null)}>
              Cancel
            </Button>
            <Button color={confirm === 'rollback' ? 'red' : 'blue'} loading={step.isPending} onClick={() => confirm && step.mutate(confirm)}>
              {confirm === 'promote' ? 'Promote' : 'Roll back'}
            </Button>
          </Group>
        </Stack>
      </Modal>
      <Card withBorder padding="md">
        <form onSubmit={submit} aria-labelledby="canary-heading">
          <Stack gap="sm">
            <Title order={2} size="h4" id="canary-heading">
              Set the release
            </Title>
            <Group grow align="flex-start">
              <NativeSelect label="Stable version" value={form.stable} onChange={(e) => setForm({ ...form, stable: e.currentTarget.value })} data={options} />
              <NativeSelect
                label="Canary version"
                value={form.canary}
                onChange={(e) => setForm({ ...form, canary: e.currentTarget.value })}
                data={[{ value: '', label: 'none' }, ...options.map((o) => ({ value: o, label: o }))]}
              />
            </Group>
            <Group grow align="flex-start">
              <NumberInput
                label="Canary share of users (%)"
                min={0}
                max={100}
                value={form.percent}
                onChange={(v) => setForm({ ...form, percent: v })}
                disabled={!form.canary}
                error={fieldError(set.error, 'canary_percent')}
              />
              <TextInput
                label="Canary Keycloak groups"
                description="Comma-separated; their members always get the canary"
                value={form.groups}
                onChange={(e) => setForm({ ...form, groups: e.currentTarget.value })}
                disabled={!form.canary}
              />
            </Group>
            <FormError error={set.error} />
            <Group>
              <Button type="submit" variant="light" loading={set.isPending} disabled={!form.stable}>
                Save release
              </Button>
            </Group>
          </Stack>
        </form>
      </Card>
    </Stack>
  );
}

function ModelVersions({ bu }: { bu: BusinessUnit }) {
  const release = useRelease(bu.id);
  const [params, setParams] = useSearchParams();
  const from = isIsoDay(params.get('from') ?? '') ? params.get('from')! : daysAgo(13);
  const to = isIsoDay(params.get('to') ?? '') ? params.get('to')! : daysAgo(0);
  const options = useVersionOptions(bu, release.data, from, to);
  const a = params.get('a') ?? release.data?.stable ?? options[0] ?? '';
  const b = params.get('b') ?? release.data?.canary ?? options[1] ?? options[0] ?? '';
  const [draft, setDraft] = useState<{ a: string; b: string; from: string; to: string } | null>(null);
  const shown = draft ?? { a, b, from, to };
  const [problem, setProblem] = useState<string | null>(null);
  const ready = a !== '' && b !== '';
  const compare = useQuery({
    queryKey: ['bus', bu.id, 'compare', a, b, from, to],
    enabled: ready,
    queryFn: () => fetchComparison(bu.id, { a, b, from, to }),
  });

  if (release.isPending) return <LoadingState label="Loading the release…" />;
  if (release.isError) return <ErrorState error={release.error} />;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const error = validateRange(shown.from, shown.to) ?? (shown.a && shown.b ? null : 'Choose two model versions.');
    setProblem(error);
    if (error) return;
    setParams((prev) => {
      const next = new URLSearchParams(prev);
      for (const [k, v] of Object.entries(shown)) next.set(k, v);
      return next;
    });
    setDraft(null);
  };
  const choices = Array.from(new Set([...options, a, b].filter(Boolean)));

  return (
    <Stack gap="md">
      <ReleaseCard bu={bu} release={release.data} />
      <section aria-labelledby="compare-heading">
        <Stack gap="sm">
          <Title order={2} size="h4" id="compare-heading">
            Compare
          </Title>
          <form onSubmit={submit} aria-label="Comparison settings">
            <Group align="flex-end" gap="sm">
              {choices.length > 0 ? (
                <>
                  <NativeSelect label="Control" value={shown.a} onChange={(e) => setDraft({ ...shown, a: e.currentTarget.value })} data={choices} w={220} />
                  <NativeSelect label="Candidate" value={shown.b} onChange={(e) => setDraft({ ...shown, b: e.currentTarget.value })} data={choices} w={220} />
                </>
              ) : (
                <>
                  <TextInput label="Control" value={shown.a} onChange={(e) => setDraft({ ...shown, a: e.currentTarget.value })} />
                  <TextInput label="Candidate" value={shown.b} onChange={(e) => setDraft({ ...shown, b: e.currentTarget.value })} />
                </>
              )}
              <TextInput type="date" label="From" value={shown.from} onChange={(e) => setDraft({ ...shown, from: e.currentTarget.value })} w={160} />
              <TextInput type="date" label="To" value={shown.to} onChange={(e) => setDraft({ ...shown, to: e.currentTarget.value })} w={160} />
              <Button type="submit">Compare</Button>
            </Group>
            {problem ? (
              <Text c="red" size="sm" role="alert" mt={4}>
                {problem}
              </Text>
            ) : null}
          </form>
          {!ready ? (
            <EmptyState title="No model versions to compare">
              {bu.slug} has no models yet. Deploy one on the Models &amp; deployments page;
              adapters from fine-tuning jobs appear here as further versions.
            </EmptyState>
          ) : compare.isPending ? (
            <LoadingState label="Comparing…" />
          ) : compare.isError ? (
            <AnalyticsError error={compare.error} />
          ) : (
            <ComparisonTable comparison={compare.data} />
          )}
          <Text size="xs" c="dimmed">
            Same period and population for both versions ({from} to {to}, UTC); intervals are the
            server's Wilson 95 % intervals.
          </Text>
        </Stack>
      </section>
      <ReleaseActions key={release.data.version} bu={bu} release={release.data} options={choices} />
    </Stack>
  );
}

export function ModelVersionsPage() {
  return (
    <Page
      title="Model versions"
      description="The release of a business unit (stable and canary), the side-by-side comparison that decides a canary, and promote / rollback."
    >
      <WithBu>{(bu) => <ModelVersions bu={bu} />}</WithBu>
    </Page>
  );
}
