import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { NAV_ITEMS } from '../../components/AppLayout';
import { BU, apiError, installFakeApi, json, notFoundRoute } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import {
  apiTime,
  displayPrompt,
  firedRule,
  promptLogQuery,
  readFilters,
  ruleLabel,
  validateFilters,
  writeFilters,
  type PromptLog,
} from './promptLogs';
import { PromptLogsPage } from './PromptLogsPage';

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

const LOGS = `/api/v1/bus/${BU.id}/prompt-logs`;

function entry(overrides: Partial<PromptLog>): PromptLog {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    logged_at: '2026-12-05T17:20:03Z',
    mode: 'full',
    user_id: 'u-alice',
    username: 'alice',
    request_id: 'req-1',
    completion_id: 'cmpl-1',
    feature: 'completion',
    model_version: 'payments-sdk-v3',
    path: 'src/pay.py',
    language: 'python',
    prompt_chars: 5920,
    suffix_chars: 311,
    completion_chars: 42,
    prompt_tokens: 1702,
    completion_tokens: 12,
    rules: [{ action: 'redact', type: 'github_token', rule: 'github.token' }],
    cancelled: false,
    prompt: 'TOKEN = "<redacted:github_token>"\ndef pay(',
    suffix: '\n\nprint(pay())',
    completion: 'amount: int) -> Receipt:',
    ...overrides,
  };
}

const FULL = entry({});
const METADATA = entry({
  id: '00000000-0000-4000-8000-000000000002',
  logged_at: '2026-12-05T17:19:41Z',
  mode: 'metadata',
  username: 'bob',
  user_id: 'u-bob',
  feature: 'chat',
  model_version: 'cove-base',
  path: null,
  language: null,
  prompt_tokens: null,
  completion_tokens: null,
  rules: [],
  cancelled: true,
  prompt: null,
  suffix: null,
  completion: null,
});
const OLDER = entry({
  id: '00000000-0000-4000-8000-000000000003',
  logged_at: '2026-12-04T09:00:00Z',
  username: 'carol',
  path: 'src/older.ts',
  rules: [{ action: 'drop', type: 'aws_secret_key', rule: 'aws.secret' }],
});

describe('prompt log helpers', () => {
  it('turns a day or a minute into an inclusive API time range', () => {
    expect(apiTime('2026-12-05', 'since')).toBe('2026-12-05T00:00:00Z');
    expect(apiTime('2026-12-05', 'until')).toBe('2026-12-05T23:59:59.999Z');
    expect(apiTime('2026-12-05T17:20', 'since')).toBe('2026-12-05T17:20:00Z');
    expect(apiTime('2026-12-05T17:20', 'until')).toBe('2026-12-05T17:20:59.999Z');
    expect(apiTime('2026-12-05T17:20:03', 'until')).toBe('2026-12-05T17:20:03.999Z');
    expect(promptLogQuery({ user: 'alice', since: '2026-12-01' }, 'abc')).toEqual({
      user: 'alice',
      since: '2026-12-01T00:00:00Z',
      cursor: 'abc',
      limit: 50,
    });
  });

  it('reads only valid filters from the URL and writes them back', () => {
    const params = new URLSearchParams('bu=x&user=%20alice%20&since=yesterday&until=2026-02-30');
    expect(readFilters(params)).toEqual({ user: 'alice' });
    const written = writeFilters(params, { since: '2026-12-01T08:00' });
    expect(written.get('bu')).toBe('x');
    expect(written.get('user')).toBeNull();
    expect(written.get('since')).toBe('2026-12-01T08:00');
  });

  it('refuses a range that ends before it starts', () => {
    expect(validateFilters({ since: '2026-12-02', until: '2026-12-01' })).toMatch(/Since must not be after until/);
    expect(validateFilters({ since: '2026-12-01T10:00:00', until: '2026-12-01T10:00:00' })).toBeNull();
    expect(validateFilters({ since: '2026-12-01', until: '2026-12-01' })).toBeNull();
  });

  it('labels fired rules and indents a chat prompt', () => {
    expect(ruleLabel(firedRule({ action: 'redact', type: 'password', rule: 'assignment.password' }))).toBe(
      'redact · password · assignment.password',
    );
    expect(ruleLabel(firedRule({ action: 'audit' }))).toBe('audit');
    expect(displayPrompt(entry({ feature: 'chat', prompt: '[{"role":"user","content":"hi"}]' }))).toBe(
      '[\n  {\n    "role": "user",\n    "content": "hi"\n  }\n]',
    );
    expect(displayPrompt(entry({ feature: 'chat', prompt: 'not json' }))).toBe('not json');
  });

  it('sits next to the audit log in the navigation', () => {
    const paths = NAV_ITEMS.map((item) => item.path as string);
    expect(paths.indexOf('/prompt-logs')).toBe(paths.indexOf('/audit') + 1);
  });
});

describe('PromptLogsPage', () => {
  it('lists entries with the filters of the URL and says reads are audited', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => json({ entries: [FULL, METADATA], next_cursor: null }),
    });
    renderAt(
      `/prompt-logs?bu=${BU.id}&user=alice&since=2026-12-01&until=2026-12-05T18:00`,
      '/prompt-logs',
      <PromptLogsPage />,
    );
    const table = await screen.findByRole('table', { name: 'Prompt logs' });
    const rows = within(table).getAllByRole('row');
    expect(rows).toHaveLength(3);
    const first = rows[1]!;
    expect(within(first).getByRole('rowheader')).toHaveTextContent('2026-12-05 17:20:03 UTC');
    expect(first).toHaveTextContent('alice');
    expect(first).toHaveTextContent('payments-sdk-v3');
    expect(first).toHaveTextContent('src/pay.py');
    expect(first).toHaveTextContent('python');
    expect(first).toHaveTextContent('prompt 5,920 · suffix 311 · completion 42 chars');
    expect(first).toHaveTextContent('tokens 1,702 in / 12 out');
    expect(within(first).getByText('redact · github_token · github.token')).toBeInTheDocument();
    const second = rows[2]!;
    expect(second).toHaveTextContent('bob');
    expect(within(second).getByText('cancelled')).toBeInTheDocument();
    expect(second).toHaveTextContent('tokens — in / — out');
    expect(screen.queryByRole('button', { name: 'Load older entries' })).toBeNull();
    expect(screen.getByRole('note')).toHaveTextContent(/recorded in the audit log as prompt_logs\.read/);

    const request = seen.find((s) => s.path === LOGS)!;
    expect(request.query.get('user')).toBe('alice');
    expect(request.query.get('since')).toBe('2026-12-01T00:00:00Z');
    expect(request.query.get('until')).toBe('2026-12-05T18:00:59.999Z');
    expect(request.query.get('limit')).toBe('50');
    expect(request.query.get('cursor')).toBeNull();
    expect(request.headers.get('Authorization')).toBe('Bearer cove_testkey_secret');
  });

  it('expands a full entry with the keyboard to show its text in monospace', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => json({ entries: [FULL], next_cursor: null }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    const toggle = await screen.findByRole('button', {
      name: 'Show text of the completion by alice at 2026-12-05 17:20:03 UTC',
    });
    expect(toggle).toHaveAttribute('aria-expanded', 'false');
    expect(screen.queryByLabelText('Prompt text')).toBeNull();
    toggle.focus();
    await userEvent.keyboard('{Enter}');
    expect(toggle).toHaveAttribute('aria-expanded', 'true');
    const prompt = screen.getByLabelText('Prompt text');
    expect(prompt.tagName).toBe('PRE');
    expect(prompt).toHaveTextContent('TOKEN = "<redacted:github_token>" def pay(');
    expect(within(prompt).getByText('<redacted:github_token>').tagName).toBe('MARK');
    expect(screen.getByLabelText('Suffix text')).toHaveTextContent('print(pay())');
    expect(screen.getByLabelText('Completion text')).toHaveTextContent('amount: int) -> Receipt:');
    expect(document.getElementById(toggle.getAttribute('aria-controls')!)).toContainElement(prompt);
    expect(screen.getByText('req-1')).toBeInTheDocument();
    await userEvent.keyboard(' ');
    expect(toggle).toHaveAttribute('aria-expanded', 'false');
    expect(screen.queryByLabelText('Prompt text')).toBeNull();
  });

  it('says a metadata entry kept no text', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => json({ entries: [METADATA], next_cursor: null }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    await userEvent.click(
      await screen.findByRole('button', { name: 'Show details of the chat by bob at 2026-12-05 17:19:41 UTC' }),
    );
    expect(screen.getByText(/Metadata only — no text kept/)).toBeInTheDocument();
    expect(screen.queryByLabelText('Prompt text')).toBeNull();
    expect(screen.queryByLabelText('Completion text')).toBeNull();
  });

  it('loads older entries with the cursor of the last page', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: ({ query }) =>
        query.get('cursor') === 'MjAyNi0xMi0wNVQxNzoxOTo0MQ'
          ? json({ entries: [OLDER], next_cursor: null })
          : json({ entries: [FULL, METADATA], next_cursor: 'MjAyNi0xMi0wNVQxNzoxOTo0MQ' }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}&user=alice`, '/prompt-logs', <PromptLogsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Load older entries' }));
    expect(await screen.findByText('src/older.ts')).toBeInTheDocument();
    const requests = seen.filter((s) => s.path === LOGS);
    expect(requests).toHaveLength(2);
    expect(requests[1]!.query.get('cursor')).toBe('MjAyNi0xMi0wNVQxNzoxOTo0MQ');
    expect(requests[1]!.query.get('user')).toBe('alice');
    expect(screen.getByText('drop · aws_secret_key · aws.secret')).toBeInTheDocument();
    // Both pages stay on screen, newest first, and the last page has no further button.
    const rows = within(screen.getByRole('table', { name: 'Prompt logs' })).getAllByRole('row');
    expect(rows.map((r) => r.querySelector('th[scope="row"] time')?.textContent ?? 'header')).toEqual([
      'header',
      '2026-12-05 17:20:03 UTC',
      '2026-12-05 17:19:41 UTC',
      '2026-12-04 09:00:00 UTC',
    ]);
    expect(screen.queryByRole('button', { name: 'Load older entries' })).toBeNull();
  });

  it('keeps the loaded entries when an older page is refused', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: ({ query }) =>
        query.get('cursor')
          ? apiError(400, 'invalid_cursor', "'cursor' is not a cursor this API returned")
          : json({ entries: [FULL], next_cursor: 'stale' }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Load older entries' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Could not load older entries');
    expect(alert).toHaveTextContent("'cursor' is not a cursor this API returned");
    expect(alert).toHaveTextContent('invalid_cursor');
    expect(screen.getByText('src/pay.py')).toBeInTheDocument();
  });

  it('tells a developer that only BU admins can read prompt logs', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => apiError(403, 'bu_admin_required', 'Only a BU admin may read prompt logs'),
    });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Only BU admins can read prompt logs');
    expect(alert).toHaveTextContent('Only a BU admin may read prompt logs');
    expect(alert).toHaveTextContent('bu_admin_required');
    expect(screen.queryByRole('table')).toBeNull();
  });

  it('says when the platform has no prompt-log API', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => json([BU]), [`GET ${LOGS}`]: notFoundRoute });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    expect(await screen.findByText('Prompt logs API not available')).toBeInTheDocument();
  });

  it('explains an empty log and points at the BU policy', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => json({ entries: [], next_cursor: null }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}&user=nobody`, '/prompt-logs', <PromptLogsPage />);
    const empty = await screen.findByTestId('empty-state');
    expect(empty).toHaveTextContent('No prompt logs');
    expect(empty).toHaveTextContent('Nothing matches these filters.');
    expect(empty).toHaveTextContent(
      "Prompt logging is off for this BU unless its policy's logging.mode is metadata or full — see Policies.",
    );
    expect(within(empty).getByRole('link', { name: 'Policies' })).toHaveAttribute('href', `/policies?bu=${BU.id}`);
  });

  it('puts the filters in the URL and asks the API with them', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => json({ entries: [FULL], next_cursor: null }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    await screen.findByRole('table', { name: 'Prompt logs' });
    await userEvent.type(screen.getByLabelText('User'), 'alice');
    fireEvent.change(screen.getByLabelText('Since (UTC)'), { target: { value: '2026-12-01T08:30' } });
    fireEvent.change(screen.getByLabelText('Until (UTC)'), { target: { value: '2026-12-05T18:00' } });
    await userEvent.click(screen.getByRole('button', { name: 'Apply filters' }));
    const location = screen.getByTestId('location');
    await waitFor(() => expect(location).toHaveTextContent('user=alice'));
    const search = new URLSearchParams(location.textContent!.split('?')[1]);
    expect(search.get('bu')).toBe(BU.id);
    expect(search.get('since')).toBe('2026-12-01T08:30');
    expect(search.get('until')).toBe('2026-12-05T18:00');
    await waitFor(() => expect(seen.filter((s) => s.path === LOGS)).toHaveLength(2));
    const filtered = seen.filter((s) => s.path === LOGS)[1]!;
    expect(filtered.query.get('user')).toBe('alice');
    expect(filtered.query.get('since')).toBe('2026-12-01T08:30:00Z');
    expect(filtered.query.get('until')).toBe('2026-12-05T18:00:59.999Z');

    await userEvent.click(screen.getByRole('button', { name: 'Clear filters' }));
    await waitFor(() => expect(location).toHaveTextContent(`/prompt-logs?bu=${BU.id}`));
    expect(location.textContent).not.toMatch(/user=|since=|until=/);
    expect(screen.getByLabelText('User')).toHaveValue('');
  });

  it('refuses a time range that ends before it starts, leaving the URL alone', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${LOGS}`]: () => json({ entries: [FULL], next_cursor: null }),
    });
    renderAt(`/prompt-logs?bu=${BU.id}`, '/prompt-logs', <PromptLogsPage />);
    await screen.findByRole('table', { name: 'Prompt logs' });
    fireEvent.change(screen.getByLabelText('Since (UTC)'), { target: { value: '2026-12-05T10:00' } });
    fireEvent.change(screen.getByLabelText('Until (UTC)'), { target: { value: '2026-12-04T10:00' } });
    await userEvent.click(screen.getByRole('button', { name: 'Apply filters' }));
    expect(await screen.findByText('Since must not be after until.')).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(`/prompt-logs?bu=${BU.id}`);
    expect(screen.getByTestId('location').textContent).not.toMatch(/since=/);
  });
});
