import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import type { ApiKey } from '../../api/client';
import { ApiKeysPage, keyStatus } from './ApiKeysPage';

const KEY: ApiKey = {
  id: '22222222-2222-4222-8222-222222222222',
  key_id: 'k1',
  name: 'ci-bot',
  tenant_id: BU.id,
  user_id: null,
  scopes: ['completions'],
  created_at: '2025-01-01T00:00:00Z',
  expires_at: null,
  revoked_at: null,
  last_used_at: null,
};

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

describe('ApiKeysPage', () => {
  it('shows a new key once, with a copy button, and never again', async () => {
    let keys = [KEY];
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/api-keys`]: () => json(keys),
      [`POST /api/v1/bus/${BU.id}/api-keys`]: ({ body }) => {
        const created = { ...KEY, id: '3', key_id: 'k2', name: (body as { name: string }).name, scopes: ['completions', 'events'] as ApiKey['scopes'] };
        keys = [...keys, created];
        return json({ ...created, key: 'cove_k2_theSecretPart' }, 201);
      },
    });
    renderAt(`/api-keys?bu=${BU.id}`, '/api-keys', <ApiKeysPage />);
    expect(await screen.findByRole('rowheader', { name: 'ci-bot' })).toBeInTheDocument();
    await userEvent.type(screen.getByLabelText(/Key name/), 'laptop');
    await userEvent.click(screen.getByRole('button', { name: 'Create key' }));
    const dialog = await screen.findByRole('dialog', { name: 'Your new API key' });
    expect(within(dialog).getByTestId('new-api-key')).toHaveTextContent('cove_k2_theSecretPart');
    expect(within(dialog).getByRole('button', { name: 'Copy key' })).toBeInTheDocument();
    expect(within(dialog).getByText(/only time the key is shown/)).toBeInTheDocument();
    const post = seen.find((s) => s.method === 'POST')!;
    expect(post.body).toEqual({ name: 'laptop', scopes: ['completions', 'events'], expires_in_days: null });
    await userEvent.click(within(dialog).getByRole('button', { name: 'I have stored the key' }));
    await waitFor(() => expect(screen.queryByText('cove_k2_theSecretPart')).toBeNull());
    expect(await screen.findByRole('rowheader', { name: 'laptop' })).toBeInTheDocument();
  });

  it('revokes only after confirmation', async () => {
    let keys = [KEY];
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/api-keys`]: () => json(keys),
      [`DELETE /api/v1/bus/${BU.id}/api-keys/${KEY.id}`]: () => {
        keys = [{ ...KEY, revoked_at: '2025-01-02T00:00:00Z' }];
        return new Response(null, { status: 204 });
      },
    });
    renderAt(`/api-keys?bu=${BU.id}`, '/api-keys', <ApiKeysPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Revoke ci-bot' }));
    const dialog = await screen.findByRole('dialog', { name: 'Revoke ci-bot?' });
    expect(seen.some((s) => s.method === 'DELETE')).toBe(false);
    await userEvent.click(within(dialog).getByRole('button', { name: 'Revoke key' }));
    await waitFor(() => expect(seen.some((s) => s.method === 'DELETE')).toBe(true));
    const row = (await screen.findByText('revoked')).closest('tr')!;
    expect(within(row).getByRole('button', { name: 'Revoke ci-bot' })).toBeDisabled();
  });

  it('shows an empty state', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/api-keys`]: () => json([]),
    });
    renderAt(`/api-keys?bu=${BU.id}`, '/api-keys', <ApiKeysPage />);
    expect(await screen.findByText('No API keys yet')).toBeInTheDocument();
  });

  it('derives a key status', () => {
    const now = new Date('2025-06-01T00:00:00Z');
    expect(keyStatus(KEY, now)).toBe('active');
    expect(keyStatus({ ...KEY, expires_at: '2025-05-01T00:00:00Z' } , now)).toBe('expired');
    expect(keyStatus({ ...KEY, revoked_at: '2025-05-01T00:00:00Z' } , now)).toBe('revoked');
  });
});
