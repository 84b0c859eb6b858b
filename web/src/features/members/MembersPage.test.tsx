import { screen, within } from '@testing-library/react';
import type { Schemas } from '../../api/client';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { MembersPage, describeGrant } from './MembersPage';

type MemberList = Schemas['MemberList'];

const LIST: MemberList = {
  bu_id: BU.id,
  bu_slug: BU.slug,
  directory: 'connected',
  directory_error: null,
  members: [
    {
      username: 'root',
      email: null,
      role: 'platform-admin',
      roles: [{ role: 'platform-admin', source: 'keycloak-realm-role', via: 'platform-admin' }],
    },
    {
      username: 'alice',
      email: 'alice@example.test',
      role: 'bu-admin',
      roles: [{ role: 'bu-admin', source: 'keycloak-group', via: '/cove/demo/admins' }],
    },
    {
      username: 'dev',
      email: null,
      role: 'developer',
      roles: [
        { role: 'developer', source: 'cove', via: null },
        { role: 'viewer', source: 'keycloak-group', via: '/cove/demo/viewers' },
      ],
    },
  ],
};

const PATH = `/api/v1/bus/${BU.id}/members`;

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

describe('MembersPage', () => {
  it('lists members with their role and where each role comes from', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => json([BU]), [`GET ${PATH}`]: () => json(LIST) });
    renderAt(`/members?bu=${BU.id}`, '/members', <MembersPage />);
    const table = await screen.findByRole('table', { name: 'Members' });
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows.map((r) => within(r).getByRole('rowheader').textContent)).toEqual(['root', 'alice', 'dev']);
    const alice = rows[1]!;
    expect(within(alice).getByText('alice@example.test')).toBeInTheDocument();
    expect(within(alice).getByText('Keycloak group /cove/demo/admins', { exact: false })).toBeInTheDocument();
    const dev = rows[2]!;
    expect(within(dev).getByText('Cove membership', { exact: false })).toBeInTheDocument();
    expect(within(dev).getByText('Keycloak group /cove/demo/viewers', { exact: false })).toBeInTheDocument();
    expect(within(rows[0]!).getByText('Keycloak realm role platform-admin', { exact: false })).toBeInTheDocument();
    expect(screen.queryByText('Keycloak is not connected')).toBeNull();
  });

  it('says when Keycloak is not connected or did not answer', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${PATH}`]: () =>
        json({ ...LIST, directory: 'unavailable', directory_error: 'Keycloak did not answer the member lookup: KeycloakConnectionError', members: [LIST.members[2]] }),
    });
    renderAt(`/members?bu=${BU.id}`, '/members', <MembersPage />);
    expect(await screen.findByRole('alert', { name: /Keycloak did not answer/ })).toHaveTextContent('KeycloakConnectionError');
    expect(screen.getByRole('rowheader', { name: 'dev' })).toBeInTheDocument();
  });

  it('shows loading, then an empty state with where to add people', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${PATH}`]: () => json({ ...LIST, directory: 'not_configured', members: [] }),
    });
    renderAt(`/members?bu=${BU.id}`, '/members', <MembersPage />);
    expect(await screen.findByText('Loading members…')).toBeInTheDocument();
    expect(await screen.findByText('No members yet')).toBeInTheDocument();
    expect(screen.getByText(/\/cove\/demo\/developers/)).toBeInTheDocument();
    expect(screen.getByText('Keycloak is not connected')).toBeInTheDocument();
  });

  it('shows the API error to a caller who may not list members', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${PATH}`]: () => apiError(403, 'bu_admin_required', "Only a BU admin may list the BU's members"),
    });
    renderAt(`/members?bu=${BU.id}`, '/members', <MembersPage />);
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('The platform API answered 403');
    expect(alert).toHaveTextContent("Only a BU admin may list the BU's members");
    expect(alert).toHaveTextContent('bu_admin_required');
    expect(screen.queryByRole('table', { name: 'Members' })).toBeNull();
  });

  it('describes each source', () => {
    expect(describeGrant({ role: 'viewer', source: 'keycloak-group', via: '/cove/x/viewers' })).toBe('Keycloak group /cove/x/viewers');
    expect(describeGrant({ role: 'platform-admin', source: 'cove', via: null })).toBe('Cove platform admin');
    expect(describeGrant({ role: 'developer', source: 'cove', via: null })).toBe('Cove membership');
  });
});
