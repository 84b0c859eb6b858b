import { MantineProvider } from '@mantine/core';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, installFakeApi, json, notFoundRoute } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { auditCsv, auditQuery, diffRows, type AuditEntry } from './audit';
import { AuditPage } from './AuditPage';
import { DiffView } from './DiffView';

const ENTRY: AuditEntry = {
  id: 7,
  created_at: '2025-01-01T10:00:00Z',
  tenant_id: null,
  actor: 'admin',
  action: 'policy.update',
  target: 'policy:organisation',
  diff: { content: [{ a: 1 }, { a: 2 }], note: [null, '=SUM(A1), "quoted"'] },
  request_id: 'r1',
};

afterEach(() => vi.unstubAllGlobals());

describe('audit helpers', () => {
  it('quotes, escapes and defuses spreadsheet formulas in the CSV', () => {
    const csv = auditCsv([ENTRY]);
    const [header, line] = csv.trim().split('\r\n');
    expect(header).toBe('created_at,actor,action,target,tenant_id,request_id,diff');
    expect(line).toContain('2025-01-01T10:00:00Z,admin,policy.update,policy:organisation,,r1,');
    expect(line).toContain('"{""content"":[{""a"":1},{""a"":2}]');
    expect(auditCsv([{ ...ENTRY, actor: '=cmd()' }])).toContain(`"'=cmd()"`);
  });

  it('turns dates into the API time range', () => {
    expect(auditQuery({ from: '2025-01-01', to: '2025-01-02', action: 'bu.' }, 40)).toEqual({
      action: 'bu.',
      since: '2025-01-01T00:00:00Z',
      until: '2025-01-02T23:59:59.999Z',
      before_id: 40,
      limit: 100,
    });
  });

  it('reads a malformed change as an after value', () => {
    expect(diffRows({ x: 'y', z: [1, 2] })).toEqual([
      ['x', undefined, 'y'],
      ['z', 1, 2],
    ]);
  });
});

describe('DiffView', () => {
  it('shows each field before and after', () => {
    render(
      <MantineProvider>
        <DiffView diff={ENTRY.diff} label="Changes" />
      </MantineProvider>,
    );
    expect(screen.getByRole('table', { name: 'Changes' })).toBeInTheDocument();
    expect(screen.getByLabelText('before: {"a":1}')).toBeInTheDocument();
    expect(screen.getByLabelText('after: {"a":2}')).toBeInTheDocument();
    expect(screen.getByLabelText('before: null')).toBeInTheDocument();
  });
});

describe('AuditPage', () => {
  beforeEach(() => signedIn());

  it('says the audit API is not available on an older platform', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => json([]), 'GET /api/v1/audit': notFoundRoute });
    renderAt('/audit', '/audit', <AuditPage />);
    expect(await screen.findByText('Audit log API not available')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Export CSV' })).toBeDisabled();
  });

  it('lists entries with filters from the URL, pages back and opens a diff', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/audit`]: ({ query }) =>
        query.get('before_id')
          ? json({ entries: [{ ...ENTRY, id: 3, target: 'older-target' }], next_before_id: null })
          : json({ entries: [ENTRY], next_before_id: 7 }),
    });
    renderAt(`/audit?scope=${BU.id}&action=policy.update&from=2025-01-01`, '/audit', <AuditPage />);
    expect(await screen.findByText('policy:organisation')).toBeInTheDocument();
    const first = seen.find((s) => s.path.endsWith('/audit'))!;
    expect(first.query.get('action')).toBe('policy.update');
    expect(first.query.get('since')).toBe('2025-01-01T00:00:00Z');
    await userEvent.click(screen.getByRole('button', { name: 'Load older entries' }));
    expect(await screen.findByText('older-target')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: /Show changes of policy.update policy:organisation/ }));
    expect(screen.getByRole('table', { name: 'Changes of policy.update #7' })).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Export CSV' })).toBeEnabled();
  });
});
