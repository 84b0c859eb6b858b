import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { BusinessUnitsPage } from './BusinessUnitsPage';

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
  });

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
    expect(screen.getByRole('button', { name: 'Delete demo (not available yet)' })).toBeDisabled();
  });

  it('shows the error when the list cannot be read', async () => {
    installFakeApi({ 'GET /api/v1/bus': () => apiError(403, 'insufficient_scope', "This key lacks the 'admin:read' scope") });
    renderAt('/business-units', '/business-units', <BusinessUnitsPage />);
    expect(await screen.findByRole('alert')).toHaveTextContent("lacks the 'admin:read' scope");
  });
});
