import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { PoliciesPage } from './PoliciesPage';
import { parsePolicyText } from './policyJson';

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

function view(version: number, document: Record<string, unknown>) {
  return { scope: BU.id, document, effective: { content: document.content ?? {} }, version, updated_by: 'admin', updated_at: null };
}

describe('PoliciesPage', () => {
  it('shows the API validation errors of a rejected policy', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/policy`]: () => json(view(0, {})),
      [`PUT /api/v1/bus/${BU.id}/policy`]: () =>
        apiError(422, 'invalid_policy', 'document.content.actions: Value error, unknown secret type(s) nope', {
          errors: [{ loc: ['content', 'actions'], msg: 'Value error, unknown secret type(s) nope', type: 'value_error' }],
        }),
    });
    renderAt(`/policies?bu=${BU.id}`, '/policies', <PoliciesPage />);
    const editor = await screen.findByLabelText(/Policy overrides/);
    fireEvent.change(editor, { target: { value: '{"content": {"actions": {"nope": "block"}}}' } });
    await userEvent.click(screen.getByRole('button', { name: 'Save policy' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('unknown secret type(s) nope');
    expect(alert).toHaveTextContent('content.actions');
  });

  it('refuses text that is not a JSON object before calling the API', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/policy`]: () => json(view(0, {})),
    });
    renderAt(`/policies?bu=${BU.id}`, '/policies', <PoliciesPage />);
    const editor = await screen.findByLabelText(/Policy overrides/);
    fireEvent.change(editor, { target: { value: '{"content": ' } });
    await userEvent.click(screen.getByRole('button', { name: 'Save policy' }));
    expect(await screen.findByText(/Not valid JSON/)).toBeInTheDocument();
    expect(seen.some((s) => s.method === 'PUT')).toBe(false);
  });

  it('re-runs the dry run under the saved policy', async () => {
    let current = view(1, { content: { actions: { github_token: 'redact' } } });
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/policy`]: () => json(current),
      [`PUT /api/v1/bus/${BU.id}/policy`]: ({ body }) => {
        const b = body as { document: Record<string, unknown>; expected_version: number };
        expect(b.expected_version).toBe(1);
        current = view(2, b.document);
        return json(current);
      },
      [`POST /api/v1/bus/${BU.id}/policy/dry-run`]: () => {
        const action = (current.document.content as { actions: { github_token: string } }).actions.github_token;
        return json(
          action === 'block'
            ? { findings: [{ type: 'github_token', start: 9, end: 49, action: 'block', rule: 'github.token' }], blocked: true, excluded: false, text: '' }
            : { findings: [{ type: 'github_token', start: 9, end: 49, action: 'redact', rule: 'github.token' }], blocked: false, excluded: false, text: 'token = "<redacted:github_token>"' },
        );
      },
    });
    renderAt(`/policies?bu=${BU.id}`, '/policies', <PoliciesPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Run dry run' }));
    expect(await screen.findByTestId('dry-run-outcome')).toHaveTextContent('Forwarded with changes');
    expect(screen.getByTestId('dry-run-text')).toHaveTextContent('<redacted:github_token>');
    fireEvent.change(screen.getByLabelText(/Policy overrides/), {
      target: { value: '{"content": {"actions": {"github_token": "block"}}}' },
    });
    await userEvent.click(screen.getByRole('button', { name: 'Save policy' }));
    await waitFor(() => expect(screen.getByTestId('dry-run-outcome')).toHaveTextContent('Blocked'));
    const findings = screen.getByRole('table', { name: 'Findings' });
    expect(within(findings).getByText('block')).toBeInTheDocument();
  });
});

describe('parsePolicyText', () => {
  it('accepts an object and an empty text', () => {
    expect(parsePolicyText('{"limits": {}}')).toEqual({ ok: true, document: { limits: {} } });
    expect(parsePolicyText('  ')).toEqual({ ok: true, document: {} });
  });
  it('rejects arrays and scalars', () => {
    expect(parsePolicyText('[1]').ok).toBe(false);
    expect(parsePolicyText('3').ok).toBe(false);
  });
});
