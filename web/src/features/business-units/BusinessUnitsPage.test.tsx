import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { BusinessUnitsPage } from './BusinessUnitsPage';

// Tests that type whole forms take seconds on a loaded machine (seen: 5.1 s at load 9 on 2 CPUs).
const TYPING_TIMEOUT_MS = 20_000;

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

describe('BusinessUnitsPage', () => {
  it('creates a business unit and shows a taken slug as the API says', async () => {
    let bus: unknown[] = [BU];
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json(bus),
      'POST /api/v1/bus': ({ body }) => {
        const b = body as { slug: string; name: string };
        if (b.slug === 'demo') return apiError(409, 'slug_taken', "A business unit with slug 'demo' exists");
        const created = { ...BU, id: '2', slug: b.slug, name: b.name };
        bus = [...bus, created];
        return json(created, 201);
      },
    });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    await screen.findByRole('rowheader', { name: 'demo' });
    await userEvent.click(screen.getByRole('button', { name: 'Create business unit' }));
    const dialog = await screen.findByRole('dialog', { name: 'Create business unit' });
    await userEvent.type(within(dialog).getByLabelText(/Slug/), 'demo');
    await userEvent.type(within(dialog).getByLabelText(/^Name/), 'Payments');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Create business unit' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent("slug 'demo' exists");
    const slug = within(dialog).getByLabelText(/Slug/);
    await userEvent.clear(slug);
    await userEvent.type(slug, 'payments');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Create business unit' }));
    expect(await screen.findByRole('rowheader', { name: 'payments' })).toBeInTheDocument();
    const post = seen.filter((s) => s.method === 'POST').at(-1)!;
    expect(post.body).toMatchObject({ slug: 'payments', name: 'Payments', gpu_quota: 0, max_model_instances: 2, tokens_per_day: null });
  }, TYPING_TIMEOUT_MS);

  it('suspends after confirmation', async () => {
    let bus = [BU];
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json(bus),
      [`PATCH /api/v1/bus/${BU.id}`]: ({ body }) => {
        bus = [{ ...BU, ...(body as object) } as typeof BU];
        return json(bus[0]);
      },
    });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Suspend demo' }));
    const dialog = await screen.findByRole('dialog', { name: 'Suspend demo' });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Suspend' }));
    await waitFor(() => expect(seen.find((s) => s.method === 'PATCH')?.body).toEqual({ status: 'suspended' }));
    expect(await screen.findByRole('button', { name: 'Resume demo' })).toBeInTheDocument();
  });

  it('downloads the export, then requests the deletion once the slug is typed', async () => {
    let bus: unknown[] = [BU];
    const createObjectURL = vi.fn((blob: Blob) => `blob:${blob.size}`);
    vi.stubGlobal('URL', Object.assign(URL, { createObjectURL, revokeObjectURL: vi.fn() }));
    const saved: string[] = [];
    const click = vi
      .spyOn(HTMLAnchorElement.prototype, 'click')
      .mockImplementation(function (this: HTMLAnchorElement) {
        saved.push(this.download);
      });
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json(bus),
      [`GET /api/v1/bus/${BU.id}/export`]: () =>
        new Response('archive bytes', {
          headers: {
            'content-type': 'application/gzip',
            'content-disposition': 'attachment; filename="cove-bu-demo-20261205T100000Z.tar.gz"',
          },
        }),
      [`POST /api/v1/bus/${BU.id}/deletion`]: () => {
        bus = [{ ...BU, status: 'deleting', purge_after: '2026-12-12T10:00:00Z' }];
        return json(bus[0], 202);
      },
    });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Delete demo (with export)' }));
    const dialog = await screen.findByRole('dialog', { name: 'Delete demo' });
    const submit = within(dialog).getByRole('button', { name: 'Export and delete' });
    expect(submit).toBeDisabled();
    await userEvent.type(within(dialog).getByLabelText(/Type demo to confirm/), 'demo');
    await userEvent.click(submit);
    expect(await screen.findByRole('button', { name: 'Cancel deletion of demo' })).toBeInTheDocument();
    expect(screen.getByText(/^purged after/)).toBeInTheDocument();
    const calls = seen.filter((s) => s.path.startsWith('/api/v1/bus/')).map((s) => `${s.method} ${s.path}`);
    expect(calls).toEqual([`GET /api/v1/bus/${BU.id}/export`, `POST /api/v1/bus/${BU.id}/deletion`]);
    expect(seen.find((s) => s.method === 'POST')?.body).toEqual({ grace_days: null });
    expect(saved).toEqual(['cove-bu-demo-20261205T100000Z.tar.gz']);
    expect(createObjectURL).toHaveBeenCalledTimes(1);
    click.mockRestore();
  }, TYPING_TIMEOUT_MS);

  it('deletes nothing when the export is refused, and shows why', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/export`]: () =>
        apiError(403, 'bu_admin_required', 'Only a BU admin may export this BU'),
    });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Delete demo (with export)' }));
    const dialog = await screen.findByRole('dialog', { name: 'Delete demo' });
    await userEvent.type(within(dialog).getByLabelText(/Type demo to confirm/), 'demo');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Export and delete' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Only a BU admin may export');
    expect(seen.some((s) => s.method === 'POST')).toBe(false);
  });

  it('shows a refused deletion as the API says', async () => {
    vi.stubGlobal('URL', Object.assign(URL, { createObjectURL: vi.fn(() => 'blob:x'), revokeObjectURL: vi.fn() }));
    const click = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => {});
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/export`]: () => new Response('x', { headers: { 'content-type': 'application/gzip' } }),
      [`POST /api/v1/bus/${BU.id}/deletion`]: () =>
        apiError(409, 'bu_already_deleting', 'The business unit is already being deleted'),
    });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Delete demo (with export)' }));
    const dialog = await screen.findByRole('dialog', { name: 'Delete demo' });
    await userEvent.type(within(dialog).getByLabelText(/Grace period/), '0');
    await userEvent.type(within(dialog).getByLabelText(/Type demo to confirm/), 'demo');
    await userEvent.click(within(dialog).getByRole('button', { name: 'Export and delete' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('already being deleted');
    expect(within(dialog).getByText('Export saved as cove-bu-demo.tar.gz')).toBeInTheDocument();
    click.mockRestore();
  });

  it('cancels a pending deletion after confirmation', async () => {
    const later = new Date(Date.now() + 86_400_000).toISOString();
    const past = new Date(Date.now() - 60_000).toISOString();
    const gone = { ...BU, id: '3', slug: 'gone', status: 'deleting', purge_after: past };
    let bus: unknown[] = [{ ...BU, status: 'deleting', purge_after: later }, gone];
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json(bus),
      [`POST /api/v1/bus/${BU.id}/restore`]: () => {
        bus = [BU, gone];
        return json(BU);
      },
    });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    expect(await screen.findByText(/^purged after/)).toBeInTheDocument();
    // Past its grace period a BU can no longer be restored: no button for it.
    expect(screen.getByText('being purged')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Cancel deletion of gone' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Suspend demo' })).not.toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Cancel deletion of demo' }));
    const dialog = await screen.findByRole('dialog', { name: 'Cancel deletion of demo' });
    await userEvent.click(within(dialog).getByRole('button', { name: 'Cancel deletion' }));
    expect(await screen.findByRole('button', { name: 'Suspend demo' })).toBeInTheDocument();
    expect(seen.filter((s) => s.method === 'POST').map((s) => s.path)).toEqual([`/api/v1/bus/${BU.id}/restore`]);
  });

  it('shows the error when the list cannot be read', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => apiError(403, 'insufficient_scope', "This key lacks the 'admin:read' scope") });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    expect(await screen.findByRole('alert')).toHaveTextContent("lacks the 'admin:read' scope");
  });
});
