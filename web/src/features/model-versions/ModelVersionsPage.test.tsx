import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json, notFoundRoute } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { ModelVersionsPage } from './ModelVersionsPage';

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

const RELEASE = {
  bu_id: BU.id,
  stable: 'base',
  canary: 'base-sdk',
  canary_percent: 10,
  canary_groups: ['/cove/demo/pilots'],
  previous_stable: null,
  version: 3,
  updated_by: 'admin',
  updated_at: '2025-01-01T00:00:00Z',
  history: [],
};

function handlers(extra = {}) {
  return {
    'GET /api/v1/bus': () => json([BU]),
    [`GET /api/v1/bus/${BU.id}/release`]: () => json(RELEASE),
    [`GET /api/v1/bus/${BU.id}/models`]: () => json([]),
    [`GET /api/v1/bus/${BU.id}/deployments`]: () => json([]),
    [`GET /api/v1/bus/${BU.id}/metrics`]: notFoundRoute,
    [`GET /api/v1/bus/${BU.id}/metrics/compare`]: notFoundRoute,
    ...extra,
  };
}

describe('ModelVersionsPage', () => {
  it('shows the release and promotes the canary only after confirmation', async () => {
    const { seen } = installFakeApi(
      handlers({
        [`POST /api/v1/bus/${BU.id}/release/promote`]: () =>
          json({ ...RELEASE, stable: 'base-sdk', canary: null, previous_stable: 'base', version: 4 }),
      }),
    );
    renderAt(`/model-versions?bu=${BU.id}`, '/model-versions', <ModelVersionsPage />);
    expect(await screen.findByRole('group', { name: 'Canary' })).toHaveTextContent('10% of users + groups /cove/demo/pilots');
    // Without the analytics API the comparison says so instead of showing zeros.
    expect(await screen.findByText('Analytics API not available')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Promote base-sdk' }));
    expect(seen.some((s) => s.method === 'POST')).toBe(false);
    const dialog = await screen.findByRole('dialog', { name: 'Promote base-sdk?' });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Promote' }));
    await waitFor(() => expect(seen.find((s) => s.method === 'POST')?.body).toEqual({ version: 3 }));
  });

  it('shows a version conflict from the API in the dialog', async () => {
    installFakeApi(
      handlers({
        [`POST /api/v1/bus/${BU.id}/release/rollback`]: () =>
          apiError(409, 'version_conflict', 'The release changed since you read it'),
      }),
    );
    renderAt(`/model-versions?bu=${BU.id}`, '/model-versions', <ModelVersionsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Roll back' }));
    const dialog = await screen.findByRole('dialog', { name: 'Roll back?' });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Roll back' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('The release changed since you read it');
  });

  it('cannot promote without a canary', async () => {
    installFakeApi(
      handlers({ [`GET /api/v1/bus/${BU.id}/release`]: () => json({ ...RELEASE, canary: null, canary_groups: [], canary_percent: 0 }) }),
    );
    renderAt(`/model-versions?bu=${BU.id}`, '/model-versions', <ModelVersionsPage />);
    expect(await screen.findByRole('button', { name: 'Promote canary' })).toBeDisabled();
    expect(screen.getByText(/no canary to promote/)).toBeInTheDocument();
  });
});
