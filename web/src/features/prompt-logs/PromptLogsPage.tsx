import {
  Alert,
  Anchor,
  Badge,
  Box,
  Button,
  Code,
  Group,
  Mark,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
} from '@mantine/core';
import { useInfiniteQuery } from '@tanstack/react-query';
import { Fragment, useEffect, useState, type FormEvent, type ReactNode } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import type { BusinessUnit } from '../../api/client';
import { ApiError } from '../../api/errors';
import { WithBu } from '../../components/CurrentBu';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState, NotAvailableState } from '../../components/states';
import { formatCount } from '../../lib/format';
import {
  ACTION_COLOR,
  PROMPT_LOGS_PATH,
  displayPrompt,
  fetchPromptLogPage,
  firedRule,
  hasFilters,
  inputTime,
  keepsText,
  readFilters,
  ruleLabel,
  validateFilters,
  writeFilters,
  type PromptLog,
  type PromptLogFilters,
} from './promptLogs';

const COLUMNS = 8;
const NOWRAP = { whiteSpace: 'nowrap' } as const;
const NO_SHRINK = { flexShrink: 0 } as const;
// A long rule name wraps inside its badge instead of being cut off with an ellipsis.
const WRAPPING_BADGE = {
  root: { height: 'auto', maxWidth: '100%', paddingBlock: 2 },
  label: { whiteSpace: 'normal', overflow: 'visible', wordBreak: 'break-word', textAlign: 'left' },
} as const;

/** "2025-01-01 10:00:05 UTC": prompt logs come many a minute, so seconds are shown. */
function formatSecond(value: string): string {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

const count = (value: number | null) => (value === null ? '—' : formatCount(value));

interface Draft {
  user: string;
  since: string;
  until: string;
}

function toDraft(filters: PromptLogFilters): Draft {
  return {
    user: filters.user ?? '',
    since: inputTime(filters.since, 'since'),
    until: inputTime(filters.until, 'until'),
  };
}

function FiltersForm({
  value,
  onApply,
}: {
  value: PromptLogFilters;
  onApply: (next: PromptLogFilters) => void;
}) {
  const [draft, setDraft] = useState(() => toDraft(value));
  const [problem, setProblem] = useState<string | null>(null);
  const serialised = JSON.stringify(value);
  useEffect(() => setDraft(toDraft(JSON.parse(serialised) as PromptLogFilters)), [serialised]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const next: PromptLogFilters = {
      ...(draft.user.trim() ? { user: draft.user.trim() } : {}),
      ...(draft.since ? { since: draft.since } : {}),
      ...(draft.until ? { until: draft.until } : {}),
    };
    const error = validateFilters(next);
    setProblem(error);
    if (error === null) onApply(next);
  };

  const clear = () => {
    setProblem(null);
    setDraft(toDraft({}));
    onApply({});
  };

  return (
    <form onSubmit={submit} aria-label="Prompt log filters">
      <Group align="flex-end" gap="sm" wrap="wrap">
        <TextInput
          label="User"
          placeholder="user id or username"
          value={draft.user}
          onChange={(e) => setDraft({ ...draft, user: e.currentTarget.value })}
          w={200}
        />
        <TextInput
          type="datetime-local"
          label="Since (UTC)"
          value={draft.since}
          onChange={(e) => setDraft({ ...draft, since: e.currentTarget.value })}
          w={210}
        />
        <TextInput
          type="datetime-local"
          label="Until (UTC)"
          value={draft.until}
          onChange={(e) => setDraft({ ...draft, until: e.currentTarget.value })}
          w={210}
        />
        <Button type="submit">Apply filters</Button>
        <Button
          variant="default"
          disabled={!hasFilters(value) && !draft.user && !draft.since && !draft.until}
          onClick={clear}
        >
          Clear filters
        </Button>
      </Group>
      {problem ? (
        <Text c="red" size="sm" role="alert" mt={4}>
          {problem}
        </Text>
      ) : null}
    </form>
  );
}

function PromptLogsError({ error, title }: { error: unknown; title?: string }) {
  if (error instanceof ApiError && error.isMissingRoute) {
    return (
      <NotAvailableState title="Prompt logs API not available" endpoint={`GET ${PROMPT_LOGS_PATH}`}>
        The gateway keeps prompt logs as the BU's policy says; the console lists them once the
        platform serves them.
      </NotAvailableState>
    );
  }
  if (error instanceof ApiError && error.status === 403) {
    return <ErrorState error={error} title="Only BU admins can read prompt logs" />;
  }
  return <ErrorState error={error} title={title} />;
}

/** Marks the scanner's `<redacted:type>` replacements, so a reader sees what was taken out. */
function withRedactions(text: string): ReactNode[] {
  return text.split(/(<redacted:[\w.-]+>)/g).map((part, i) =>
    i % 2 === 1 ? (
      <Mark key={i} color="yellow">
        {part}
      </Mark>
    ) : (
      part
    ),
  );
}

function TextBlock({ label, text, chars }: { label: string; text: string | null; chars: number }) {
  return (
    <Stack gap={2}>
      <Text size="sm" fw={600}>
        {label}{' '}
        <Text span size="xs" c="dimmed" fw={400}>
          ({formatCount(chars)} characters)
        </Text>
      </Text>
      {text === null || text === '' ? (
        <Text size="sm" c="dimmed">
          (empty)
        </Text>
      ) : (
        <Code
          block
          tabIndex={0}
          aria-label={`${label} text`}
          style={{ maxHeight: 360, overflow: 'auto', whiteSpace: 'pre-wrap', wordBreak: 'break-word' }}
        >
          {withRedactions(text)}
        </Code>
      )}
    </Stack>
  );
}

function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <Stack gap={0}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
        {label}
      </Text>
      <Text size="sm" component="div">
        {children}
      </Text>
    </Stack>
  );
}

function EntryDetail({ entry }: { entry: PromptLog }) {
  return (
    <Stack gap="sm" py={4}>
      <SimpleGrid cols={{ base: 1, sm: 4 }} spacing="sm">
        <Fact label="User id">
          <Code>{entry.user_id}</Code>
        </Fact>
        <Fact label="Request id">{entry.request_id ? <Code>{entry.request_id}</Code> : '—'}</Fact>
        <Fact label="Completion id">{entry.completion_id ? <Code>{entry.completion_id}</Code> : '—'}</Fact>
        <Fact label="Logging mode">{entry.mode}</Fact>
      </SimpleGrid>
      {keepsText(entry) ? (
        <>
          <TextBlock
            label={entry.feature === 'chat' ? 'Prompt (messages)' : 'Prompt'}
            text={displayPrompt(entry)}
            chars={entry.prompt_chars}
          />
          {entry.feature === 'chat' && !entry.suffix ? null : (
            <TextBlock label="Suffix" text={entry.suffix} chars={entry.suffix_chars} />
          )}
          <TextBlock label="Completion" text={entry.completion} chars={entry.completion_chars} />
          <Text size="xs" c="dimmed">
            As the model saw it and the IDE got it: secrets were already replaced by{' '}
            <Code>{'<redacted:type>'}</Code> before the text was kept.
          </Text>
        </>
      ) : (
        <Text size="sm" c="dimmed">
          Metadata only — no text kept. The BU's <Code>logging.mode</Code> was <Code>{entry.mode}</Code>{' '}
          when this request was served: its sizes, token counts and rules are all that was recorded.
        </Text>
      )}
    </Stack>
  );
}

function Rules({ entry }: { entry: PromptLog }) {
  if (entry.rules.length === 0) {
    return (
      <Text size="sm" c="dimmed">
        none
      </Text>
    );
  }
  return (
    <Group gap={4} miw={180}>
      {entry.rules.map((raw, i) => {
        const rule = firedRule(raw);
        return (
          <Badge
            key={i}
            size="sm"
            variant="light"
            tt="none"
            color={ACTION_COLOR[rule.action] ?? 'gray'}
            styles={WRAPPING_BADGE}
          >
            {ruleLabel(rule)}
          </Badge>
        );
      })}
    </Group>
  );
}

function EntryRow({
  entry,
  open,
  onToggle,
}: {
  entry: PromptLog;
  open: boolean;
  onToggle: () => void;
}) {
  const when = formatSecond(entry.logged_at);
  const detailId = `prompt-log-${entry.id}`;
  return (
    <Fragment>
      <Table.Tr>
        <Table.Th scope="row" fw={400} style={NOWRAP}>
          {/* The time opens the row: a disclosure button, so Tab + Enter / Space work. */}
          <Button
            size="compact-sm"
            variant="subtle"
            color="dark"
            fw={400}
            leftSection={<span aria-hidden>{open ? '▾' : '▸'}</span>}
            aria-expanded={open}
            aria-controls={open ? detailId : undefined}
            aria-label={`${open ? 'Hide' : 'Show'} ${keepsText(entry) ? 'text' : 'details'} of the ${entry.feature} by ${entry.username} at ${when}`}
            onClick={onToggle}
          >
            <time dateTime={entry.logged_at}>{when}</time>
          </Button>
        </Table.Th>
        <Table.Td>{entry.username}</Table.Td>
        <Table.Td>
          <Stack gap={2} align="flex-start">
            <span>{entry.feature}</span>
            <Badge size="sm" variant="outline" tt="none" color={keepsText(entry) ? 'violet' : 'gray'} style={NO_SHRINK}>
              {keepsText(entry) ? 'full text' : entry.mode}
            </Badge>
          </Stack>
        </Table.Td>
        <Table.Td>
          <Code style={NOWRAP}>{entry.model_version}</Code>
        </Table.Td>
        <Table.Td>
          <Box miw={150}>
            {entry.path ? <Code style={{ overflowWrap: 'anywhere' }}>{entry.path}</Code> : '—'}
            {entry.language ? (
              <Text size="xs" c="dimmed">
                {entry.language}
              </Text>
            ) : null}
          </Box>
        </Table.Td>
        <Table.Td>
          <Text size="xs" miw={170}>
            prompt {formatCount(entry.prompt_chars)} · suffix {formatCount(entry.suffix_chars)} · completion{' '}
            {formatCount(entry.completion_chars)} chars
          </Text>
          <Text size="xs" c="dimmed">
            tokens {count(entry.prompt_tokens)} in / {count(entry.completion_tokens)} out
          </Text>
        </Table.Td>
        <Table.Td style={NOWRAP}>
          {entry.cancelled ? (
            <Badge size="sm" color="orange" variant="light" tt="none">
              cancelled
            </Badge>
          ) : (
            <Text size="sm" c="dimmed">
              no
            </Text>
          )}
        </Table.Td>
        <Table.Td>
          <Rules entry={entry} />
        </Table.Td>
      </Table.Tr>
      {open ? (
        <Table.Tr id={detailId}>
          <Table.Td colSpan={COLUMNS}>
            <EntryDetail entry={entry} />
          </Table.Td>
        </Table.Tr>
      ) : null}
    </Fragment>
  );
}

function PromptLogsOfBu({ bu, filters }: { bu: BusinessUnit; filters: PromptLogFilters }) {
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const log = useInfiniteQuery({
    queryKey: ['bus', bu.id, 'prompt-logs', filters],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) => fetchPromptLogPage(bu.id, filters, pageParam),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const toggle = (id: string) =>
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  if (log.isPending) return <LoadingState label="Loading prompt logs…" />;
  if (log.isError && !log.data) return <PromptLogsError error={log.error} />;
  const entries = log.data?.pages.flatMap((p) => p.entries) ?? [];
  if (entries.length === 0) {
    return (
      <EmptyState title="No prompt logs">
        {hasFilters(filters) ? 'Nothing matches these filters. ' : null}
        Prompt logging is off for this BU unless its policy's <Code>logging.mode</Code> is metadata or
        full — see{' '}
        <Anchor component={Link} to={`/policies?bu=${bu.id}`} inherit>
          Policies
        </Anchor>
        .
      </EmptyState>
    );
  }
  return (
    <Stack gap="xs">
      <Text size="xs" c="dimmed">
        {formatCount(entries.length)} {entries.length === 1 ? 'entry' : 'entries'} of {bu.slug}, newest first
        {log.hasNextPage ? '; older ones on request' : ''}.
      </Text>
      <Table.ScrollContainer minWidth={1200}>
        <Table withTableBorder aria-label="Prompt logs">
          <Table.Thead>
            <Table.Tr>
              <Table.Th scope="col">Time</Table.Th>
              <Table.Th scope="col">User</Table.Th>
              <Table.Th scope="col">Feature / kept</Table.Th>
              <Table.Th scope="col">Model version</Table.Th>
              <Table.Th scope="col">File</Table.Th>
              <Table.Th scope="col">Sizes and tokens</Table.Th>
              <Table.Th scope="col">Cancelled</Table.Th>
              <Table.Th scope="col">Rules fired</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {entries.map((entry) => (
              <EntryRow key={entry.id} entry={entry} open={open.has(entry.id)} onToggle={() => toggle(entry.id)} />
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {log.isFetchNextPageError ? (
        <PromptLogsError error={log.error} title="Could not load older entries" />
      ) : null}
      {log.hasNextPage ? (
        <Group>
          <Button variant="default" loading={log.isFetchingNextPage} onClick={() => void log.fetchNextPage()}>
            Load older entries
          </Button>
        </Group>
      ) : null}
    </Stack>
  );
}

export function PromptLogsPage() {
  const [params, setParams] = useSearchParams();
  const filters = readFilters(params);
  return (
    <Page
      title="Prompt logs"
      description={
        <>
          What the gateway kept of each request it forwarded to a model, as the business unit's
          policy <Code>logging.mode</Code> says: <Code>metadata</Code> (sizes, tokens, rules — no
          text) or <Code>full</Code> (also the prompt, suffix and completion, secrets already
          redacted). Newest first; filters are kept in the address, e.g.{' '}
          <Code>?user=alice&amp;since=2025-01-01</Code>.
        </>
      }
    >
      <Alert color="blue" variant="light" role="note" title="Reads are audited">
        Every page of entries you load here is recorded in the audit log as{' '}
        <Code>prompt_logs.read</Code>, with your name.
      </Alert>
      <FiltersForm value={filters} onApply={(next) => setParams((prev) => writeFilters(prev, next))} />
      <WithBu>{(bu) => <PromptLogsOfBu bu={bu} filters={filters} />}</WithBu>
    </Page>
  );
}
