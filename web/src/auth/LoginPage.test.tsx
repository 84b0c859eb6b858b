import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json } from '../test/fakeApi';
import { renderAt } from '../test/render';
import { parseConsoleConfig } from './config';
import { keyLabel } from './AuthProvider';
import { keyFromFragment, LoginPage } from './LoginPage';

afterEach(() => {
  vi.unstubAllGlobals();
  window.location.hash = '';
});

describe('dev login', () => {
  it('signs in with a valid admin key, using only the keyboard', async () => {
    const { seen } = installFakeApi({ 'GET /api/v1/bus': () => json([BU]) });
    renderAt('/login', '/login', <LoginPage />);
    const input = await screen.findByLabelText(/Admin API key/);
    await waitFor(() => expect(input).toHaveFocus());
    await userEvent.keyboard('cove_abc123_s3cret{Enter}');
    await waitFor(() => expect(screen.getByTestId('location')).toHaveTextContent('/overview'));
    const check = seen.find((s) => s.path === '/api/v1/bus')!;
    expect(check.headers.get('authorization')).toBe('Bearer cove_abc123_s3cret');
    expect(JSON.parse(sessionStorage.getItem('cove.console.session')!)).toMatchObject({
      method: 'dev',
      token: 'cove_abc123_s3cret',
      label: 'API key abc123',
    });
  });

  it('shows why a key is refused and keeps the user on the page', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => apiError(401, 'invalid_api_key', 'Invalid API key') });
    renderAt('/login', '/login', <LoginPage />);
    await userEvent.type(await screen.findByLabelText(/Admin API key/), 'cove_bad_key');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Invalid API key');
    expect(sessionStorage.getItem('cove.console.session')).toBeNull();
    expect(screen.getByTestId('location')).toHaveTextContent('/login');
  });

  it('explains a key without admin scope', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => apiError(403, 'insufficient_scope', "This key lacks the 'admin:read' scope"),
    });
    renderAt('/login', '/login', <LoginPage />);
    await userEvent.type(await screen.findByLabelText(/Admin API key/), 'cove_dev_key');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('lacks the admin:read scope');
  });

  it('signs in from a #key= link and removes the key from the address', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => json([BU]) });
    window.location.hash = '#key=cove_frag_secret';
    renderAt('/login', '/login', <LoginPage />);
    await waitFor(() => expect(screen.getByTestId('location')).toHaveTextContent('/overview'));
    expect(window.location.hash).toBe('');
  });

  it('offers single sign-on when the platform configures OIDC', async () => {
    installFakeApi({
      'GET /api/v1/console-config': () =>
        json({ oidc: { issuer: 'https://sso.example.com/realms/cove', client_id: 'cove-console' }, dev_login: false }),
    });
    renderAt('/login', '/login', <LoginPage />);
    expect(await screen.findByRole('button', { name: 'Sign in with single sign-on' })).toBeInTheDocument();
    expect(screen.queryByLabelText(/Admin API key/)).toBeNull();
  });
});

describe('helpers', () => {
  it('reads a key from a fragment', () => {
    expect(keyFromFragment('#key=cove_a_b')).toBe('cove_a_b');
    expect(keyFromFragment('#other=1')).toBeNull();
    expect(keyFromFragment('')).toBeNull();
  });

  it('labels a key by its id, never its secret', () => {
    expect(keyLabel('cove_k1d_s3cret')).toBe('API key k1d');
    expect(keyLabel('not-a-cove-key')).toBe('API key');
  });

  it('falls back to dev login when the console config has no usable OIDC', () => {
    expect(parseConsoleConfig({ oidc: null, dev_login: false })).toEqual({ oidc: null, dev_login: true });
    expect(parseConsoleConfig({ oidc: { issuer: '' } })).toEqual({ oidc: null, dev_login: true });
    expect(parseConsoleConfig('junk')).toEqual({ oidc: null, dev_login: true });
    expect(parseConsoleConfig({ oidc: { issuer: 'https://i', client_id: 'c', scope: 'openid' } })).toEqual({
      oidc: { issuer: 'https://i', client_id: 'c', scope: 'openid' },
      dev_login: true,
    });
  });
});
