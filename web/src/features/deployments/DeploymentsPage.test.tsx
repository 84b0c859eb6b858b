import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { DeploymentsPage } from './DeploymentsPage';

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

const DEPLOYMENT = {
  id: 'd1',
  tenant_id: BU.id,
  name: 'shared',
  model: 'cove-tiny',
  served_model_name: 'cove-tiny',
  endpoint_url: 'http://127.0.0.1:9000',
  mode: 'shared',
  runtime: 'external',
  status: 'degraded',
  status_detail: '/health answered 503',
  last_checked_at: '2025-01-01T00:00:00Z',
  created_at: '2025-01-01T00:00:00Z',
  updated_at: '2025-01-01T00:00:00Z',
  desired_state: 'running',
  generation: 1,
  observed_generation: 1,
  spec: { replicas: 2, gpus_per_replica: 0 },
  gpus: 0,
  max_lora_rank: 8,
  replicas_ready: 1,
  fallback_deployment: null,
  capacity: {},
  conditions: [],
  reconciled_at: null,
  adapters: [{ model_id: 'm2', model: 'cove-tiny-sdk', rank: 8, state: 'loaded', detail: null, updated_at: '2025-01-01T00:00:00Z' }],
};

const CAPACITY = {
  bu_id: BU.id,
  gpu_quota: 4,
  gpus_in_use: 1,
  gpus_available: 3,
  max_model_instances: 2,
  managed_instances: 1,
  deployments: [{ id: 'd1', name: 'shared', runtime: 'external', status: 'degraded', desired_state: 'running', replicas: 2, replicas_ready: 1, gpus: 0, capacity: {} }],
};

describe('DeploymentsPage', () => {
  it('shows status, replicas, adapters and capacity', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/deployments`]: () => json([DEPLOYMENT]),
      [`GET /api/v1/bus/${BU.id}/capacity`]: () => json(CAPACITY),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json([]),
    });
    renderAt(`/deployments?bu=${BU.id}`, '/deployments', <DeploymentsPage />);
    const row = (await screen.findByRole('rowheader', { name: 'shared' })).closest('tr')!;
    expect(row).toHaveTextContent('degraded');
    expect(row).toHaveTextContent('/health answered 503');
    expect(row).toHaveTextContent('1 / 2');
    expect(within(row).getByText('cove-tiny-sdk')).toBeInTheDocument();
    expect(row).toHaveTextContent('loaded');
    expect(await screen.findByRole('group', { name: 'GPUs in use' })).toHaveTextContent('1 of 4');
    expect(screen.getByText('No models granted')).toBeInTheDocument();
  });

  it('shows the API refusal of a registration next to the form', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET /api/v1/bus/${BU.id}/deployments`]: () => json([]),
      [`GET /api/v1/bus/${BU.id}/capacity`]: () => json({ ...CAPACITY, deployments: [] }),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json([]),
      [`POST /api/v1/bus/${BU.id}/deployments`]: () =>
        apiError(404, 'model_not_found', "No model named 'nope' in the catalog"),
    });
    renderAt(`/deployments?bu=${BU.id}`, '/deployments', <DeploymentsPage />);
    expect(await screen.findByText('No models deployed')).toBeInTheDocument();
    await userEvent.type(screen.getByLabelText(/Deployment name/), 'second');
    await userEvent.type(screen.getByLabelText(/Catalog model/), 'nope');
    await userEvent.type(screen.getByLabelText(/Endpoint URL/), 'http://x:1');
    await userEvent.click(screen.getByRole('button', { name: 'Register deployment' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent("No model named 'nope'"));
  });
});
