import { Button, Code, Group, NativeSelect, Stack, Table, Text, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useInfiniteQuery } from '@tanstack/react-query';
import { Fragment, useState, type FormEvent } from 'react';
import { useSearchParams } from 'react-router-dom';
import { downloadFile } from '../../api/client';
import { ApiError } from '../../api/errors';
import { buLabel, useBusinessUnits } from '../../api/queries';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState, NotAvailableState } from '../../components/states';
import { isIsoDay } from '../../lib/dates';
import { formatDateTime } from '../../lib/format';
import { AUDIT_PATH, auditCsv, auditQuery, fetchAuditPage, type AuditFilters } from './audit';
import { DiffView } from './DiffView';

const FIELDS = ['actor', 'action', 'from', 'to'] as const;

function saveText(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

export function AuditPage() {
  const [params, setParams] = useSearchParams();
  const bus = useBusinessUnits();
  const scope = params.get('scope') ?? '';
  const filters: AuditFilters = {};
  for (const f of FIELDS) {
    const v = params.get(f);
    if (v && ((f !== 'from' && f !== 'to') || isIsoDay(v))) filters[f] = v;
  }
  const [draft, setDraft] = useState<AuditFilters & { scope: string }>({ ...filters, scope });
  const [open, setOpen] = useState<number | null>(null);
  const log = useInfiniteQuery({
    queryKey: ['audit', scope, filters],
    initialPageParam: undefined as number | undefined,
    queryFn: ({ pageParam }) => fetchAuditPage(scope || null, filters, pageParam),
    getNextPageParam: (last) => last.next_before_id ?? undefined,
  });
  const entries = log.data?.pages.flatMap((p) => p.entries) ?? [];
  const scopeBu = bus.data?.find((b) => b.id === scope);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setParams((prev) => {
      const next = new URLSearchParams(prev);
      for (const f of [...FIELDS, 'scope'] as const) {
        const v = draft[f];
        if (v) next.set(f, v);
        else next.delete(f);
      }
      return next;
    });
  };

  const exportCsv = () => {
    if (scopeBu) {
      const q = auditQuery(filters);
      downloadFile(
        `/api/v1/bus/${scopeBu.id}/audit.csv`,
        { action: q.action, since: q.since, until: q.until },
        `cove-audit-${scopeBu.slug}.csv`,
      ).catch((err: unknown) =>
        notifications.show({ color: 'red', title: 'Export failed', message: (err as Error).message }),
      );
    } else {
      saveText('cove-audit.csv', auditCsv(entries));
    }
  };

  return (
    <Page
      title="Audit log"
      description="Every admin change and gateway policy decision — who, what, when, and the difference — append-only, newest first."
    >
      <form onSubmit={submit} aria-label="Audit filters">
        <Group align="flex-end" gap="sm">
          <NativeSelect
            label="Scope"
            value={draft.scope}
            onChange={(e) => setDraft({ ...draft, scope: e.currentTarget.value })}
            data={[
              { value: '', label: 'Whole platform (platform admins)' },
              ...(bus.data ?? []).map((b) => ({ value: b.id, label: buLabel(b) })),
            ]}
            w={260}
          />
          <TextInput label="Actor" value={draft.actor ?? ''} onChange={(e) => setDraft({ ...draft, actor: e.currentTarget.value })} w={150} />
          <TextInput
            label="Action"
            placeholder="policy.update"
            value={draft.action ?? ''}
            onChange={(e) => setDraft({ ...draft, action: e.currentTarget.value })}
            w={160}
          />
          <TextInput type="date" label="From" value={draft.from ?? ''} onChange={(e) => setDraft({ ...draft, from: e.currentTarget.value })} w={160} />
          <TextInput type="date" label="To" value={draft.to ?? ''} onChange={(e) => setDraft({ ...draft, to: e.currentTarget.value })} w={160} />
          <Button type="submit">Apply filters</Button>
          <Button variant="default" disabled={entries.length === 0} onClick={exportCsv}>
            Export CSV
          </Button>
        </Group>
      </form>
      {log.isPending ? (
        <LoadingState label="Loading the audit log…" />
      ) : log.isError ? (
        log.error instanceof ApiError && log.error.isMissingRoute ? (
          <NotAvailableState title="Audit log API not available" endpoint={`GET ${AUDIT_PATH}`}>
            Every change is recorded in the audit log table; the console lists, filters, diffs and
            exports it once the platform serves it.
          </NotAvailableState>
        ) : (
          <ErrorState error={log.error} />
        )
      ) : entries.length === 0 ? (
        <EmptyState title="No audit entries">Nothing matches these filters.</EmptyState>
      ) : (
        <Stack gap="xs">
          <Table.ScrollContainer minWidth={800}>
            <Table withTableBorder aria-label="Audit log">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th scope="col">When</Table.Th>
                  <Table.Th scope="col">Actor</Table.Th>
                  <Table.Th scope="col">Action</Table.Th>
                  <Table.Th scope="col">Target</Table.Th>
                  <Table.Th scope="col">Changes</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {entries.map((entry) => (
                  <Fragment key={entry.id}>
                    <Table.Tr>
                      <Table.Td>{formatDateTime(entry.created_at)}</Table.Td>
                      <Table.Td>{entry.actor}</Table.Td>
                      <Table.Td>
                        <Code>{entry.action}</Code>
                      </Table.Td>
                      <Table.Td>{entry.target ?? '—'}</Table.Td>
                      <Table.Td>
                        <Button
                          size="xs"
                          variant="subtle"
                          aria-expanded={open === entry.id}
                          aria-label={`${open === entry.id ? 'Hide' : 'Show'} changes of ${entry.action} ${entry.target ?? ''} #${entry.id}`}
                          onClick={() => setOpen(open === entry.id ? null : entry.id)}
                        >
                          {open === entry.id ? 'Hide' : 'Show'} {Object.keys(entry.diff ?? {}).length} change(s)
                        </Button>
                      </Table.Td>
                    </Table.Tr>
                    {open === entry.id ? (
                      <Table.Tr>
                        <Table.Td colSpan={5}>
                          <Stack gap={4}>
                            <DiffView diff={entry.diff} label={`Changes of ${entry.action} #${entry.id}`} />
                            {entry.request_id ? (
                              <Text size="xs" c="dimmed">
                                request id <Code>{entry.request_id}</Code>
                              </Text>
                            ) : null}
                          </Stack>
                        </Table.Td>
                      </Table.Tr>
                    ) : null}
                  </Fragment>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          {log.hasNextPage ? (
            <Group>
              <Button variant="default" loading={log.isFetchingNextPage} onClick={() => void log.fetchNextPage()}>
                Load older entries
              </Button>
            </Group>
          ) : null}
        </Stack>
      )}
    </Page>
  );
}
