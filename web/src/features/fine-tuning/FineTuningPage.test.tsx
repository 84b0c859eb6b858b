import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BU, apiError, installFakeApi, json } from '../../test/fakeApi';
import { renderAt, signedIn } from '../../test/render';
import { FineTuningPage } from './FineTuningPage';

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

const JOBS = `/api/v1/bus/${BU.id}/finetune-jobs`;

function job(overrides: Record<string, unknown>) {
  return {
    id: 'j0',
    bu_id: BU.id,
    name: 'sdk-v1',
    status: 'queued',
    cancel_requested: false,
    attempt: 1,
    runtime: 'local',
    gpus: 0,
    base_model: 'cove-tiny',
    spec: {
      preset: 'small',
      repositories: [
        { location: '/srv/code/ledgerlink', role: 'sdk', credentials_secret: null },
        { location: 'https://git.acme.internal/payments.git', role: 'consumer', credentials_secret: 'acme-git' },
      ],
    },
    progress: { percent: 0, step: null, total_steps: null, loss: null, eta_seconds: null },
    reason: null,
    evaluation: null,
    dataset_hash: null,
    adapter_name: 'demo-sdk-v1',
    adapter_model_id: null,
    created_by: 'demo-admin',
    created_at: '2025-01-01T10:00:00Z',
    started_at: null,
    finished_at: null,
    updated_at: '2025-01-01T10:00:00Z',
    ...overrides,
  };
}

const TRAINING = job({
  id: 'j1',
  name: 'ledgerlink-v2',
  status: 'training',
  progress: { percent: 47.5, step: 300, total_steps: 600, loss: 1.23456, eta_seconds: 150 },
  started_at: '2025-01-01T10:01:00Z',
});

// The numbers of a real run (tests/finetune/test_finetune_job_e2e.py on the tiny model).
const SUCCEEDED = job({
  id: 'j2',
  name: 'ledgerlink-v1',
  status: 'succeeded',
  progress: { percent: 100, step: 600, total_steps: 600, loss: 0.721942, eta_seconds: 0 },
  dataset_hash: 'sha256:0123456789abcdef0123456789abcdef',
  adapter_name: 'ledgerlink-v1',
  adapter_model_id: 'm9',
  evaluation: {
    base: { exact_match: 0, sdk_api_recall: 0, edit_similarity: 0.1229, syntax_validity: 0.075 },
    adapter_scores: { exact_match: 0.125, sdk_api_recall: 0.2838, edit_similarity: 0.455, syntax_validity: 0.65 },
    delta: {},
    gate: { passed: true, reasons: [], policy: {} },
    examples: 80,
    sdk_examples: 74,
  },
  started_at: '2025-01-01T09:00:00Z',
  finished_at: '2025-01-01T09:04:00Z',
});

const FAILED = job({
  id: 'j3',
  name: 'wild-lr',
  status: 'failed',
  attempt: 2,
  progress: { percent: 11.4, step: 11, total_steps: 60, loss: 591.9, eta_seconds: null },
  reason: {
    code: 'diverged',
    message: 'the loss diverged at step 11: 591.948, more than 3 times its best 7.498; lower the learning rate (1)',
    step: 11,
  },
  finished_at: '2025-01-01T10:02:00Z',
});

const BASES = [
  { id: 'b1', name: 'cove-tiny', kind: 'base', fim_tokens: { prefix: '<fim_prefix>', suffix: '<fim_suffix>', middle: '<fim_middle>' } },
  { id: 'b2', name: 'chat-7b', kind: 'base', fim_tokens: null },
  { id: 'm9', name: 'ledgerlink-v1', kind: 'adapter', fim_tokens: null },
];

// Typing character by character re-renders the whole form each time; pasting is one change.
async function fill(user: ReturnType<typeof userEvent.setup>, field: HTMLElement, text: string) {
  await user.click(field);
  await user.paste(text);
}

function rowOf(name: string): HTMLElement {
  return screen.getByRole('rowheader', { name }).closest('tr')!;
}

describe('FineTuningPage', () => {
  it('lists jobs with their state, progress and reason', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([TRAINING, SUCCEEDED, FAILED]),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}`, '/fine-tuning', <FineTuningPage />);
    await screen.findByRole('rowheader', { name: 'ledgerlink-v2' });

    const training = rowOf('ledgerlink-v2');
    expect(training).toHaveTextContent('training');
    expect(training).toHaveTextContent('48%');
    expect(training).toHaveTextContent('step 300 / 600 · loss 1.2346 · ETA 3 min');
    expect(within(training).getByRole('progressbar', { name: 'Progress of ledgerlink-v2' })).toHaveAttribute(
      'aria-valuenow',
      '47.5',
    );
    expect(within(training).getByRole('button', { name: 'Cancel ledgerlink-v2' })).toBeInTheDocument();
    expect(within(training).queryByRole('button', { name: 'Retry ledgerlink-v2' })).toBeNull();

    const failed = rowOf('wild-lr');
    expect(failed).toHaveTextContent('failed');
    expect(failed).toHaveTextContent('diverged');
    // A finished job shows no ETA, and cannot be cancelled, only retried.
    expect(failed).not.toHaveTextContent('ETA');
    expect(within(failed).getByRole('button', { name: 'Retry wild-lr' })).toBeInTheDocument();
    expect(within(failed).queryByRole('button', { name: 'Cancel wild-lr' })).toBeNull();

    const succeeded = rowOf('ledgerlink-v1');
    expect(succeeded).toHaveTextContent('succeeded');
    expect(succeeded).toHaveTextContent('100%');
    expect(within(succeeded).queryAllByRole('button', { name: /Cancel|Retry/ })).toEqual([]);
  });

  it('opens a job with the keyboard: its evaluation against the base and its log', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([SUCCEEDED]),
      [`GET ${JOBS}/j2`]: () => json(SUCCEEDED),
      [`GET ${JOBS}/j2/logs`]: () =>
        json({
          job_id: 'j2',
          next_after: 3,
          lines: [
            { id: 1, attempt: 1, level: 'info', message: 'queued by demo-admin', created_at: '2025-01-01T09:00:00Z' },
            { id: 2, attempt: 1, level: 'info', message: 'trained 600 steps on 1322 examples, final loss 0.7219', created_at: '2025-01-01T09:03:00Z' },
            { id: 3, attempt: 1, level: 'info', message: 'succeeded: adapter ledgerlink-v1 registered in the catalog', created_at: '2025-01-01T09:04:00Z' },
          ],
        }),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}`, '/fine-tuning', <FineTuningPage />);
    const open = await screen.findByRole('button', { name: 'ledgerlink-v1' });
    open.focus();
    await userEvent.keyboard('{Enter}');

    const detail = await screen.findByRole('region', { name: 'Job ledgerlink-v1' });
    const scores = await within(detail).findByRole('table', { name: 'Base model vs adapter' });
    const recall = within(scores).getByRole('rowheader', { name: 'SDK-API recall' }).closest('tr')!;
    expect(recall).toHaveTextContent('SDK-API recall0.0000.284+0.284');
    const similarity = within(scores).getByRole('rowheader', { name: 'Edit similarity' }).closest('tr')!;
    expect(similarity).toHaveTextContent('0.1230.455+0.332');
    expect(within(scores).getByRole('rowheader', { name: 'Exact match' }).closest('tr')).toHaveTextContent('0.125');
    expect(within(scores).getByRole('rowheader', { name: 'Syntax validity' }).closest('tr')).toHaveTextContent('0.650');
    expect(detail).toHaveTextContent('Promotion gate:passed');
    expect(detail).toHaveTextContent('80 held-out examples, 74 of them at SDK call sites');
    expect(detail).toHaveTextContent('registered in the catalog');
    expect(within(detail).getByRole('link', { name: 'Models & deployments' })).toHaveAttribute(
      'href',
      `/deployments?bu=${BU.id}`,
    );
    expect(detail).toHaveTextContent('https://git.acme.internal/payments.git');
    expect(detail).toHaveTextContent('credentials from acme-git');

    const log = await within(detail).findByRole('log', { name: 'Log of ledgerlink-v1' });
    expect(log).toHaveTextContent('succeeded: adapter ledgerlink-v1 registered in the catalog');
    expect(log).toHaveTextContent('trained 600 steps');
    const read = seen.find((r) => r.path === `${JOBS}/j2/logs`)!;
    expect([read.query.get('after'), read.query.get('limit')]).toEqual(['0', '1000']);
    // The selected job is in the URL, so a reload or a shared link opens it again.
    expect(screen.getByTestId('location')).toHaveTextContent(`job=j2`);

    await userEvent.click(within(detail).getByRole('button', { name: 'Close' }));
    expect(screen.queryByRole('region', { name: 'Job ledgerlink-v1' })).toBeNull();
  });

  it("reads a long log page by page and asks a running job's log only for newer lines", async () => {
    const line = (id: number) => ({ id, attempt: 1, level: 'info', message: `line ${id}`, created_at: '2025-01-01T10:00:00Z' });
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([TRAINING]),
      [`GET ${JOBS}/j1`]: () => json(TRAINING),
      [`GET ${JOBS}/j1/logs`]: (request) => {
        const after = Number(request.query.get('after'));
        const ids = after === 0 ? Array.from({ length: 1000 }, (_, i) => i + 1) : after === 1000 ? [1001, 1002] : [];
        return json({ job_id: 'j1', next_after: ids.at(-1) ?? after, lines: ids.map(line) });
      },
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}&job=j1`, '/fine-tuning', <FineTuningPage />);
    const log = await screen.findByRole('log', { name: 'Log of ledgerlink-v2' });
    expect(log).toHaveTextContent('line 1002');
    expect(within(log).getAllByText(/line \d+/)).toHaveLength(1002);
    // The job is training: the log refreshes, from the last line it has.
    await waitFor(() => expect(seen.filter((r) => r.path === `${JOBS}/j1/logs`).length).toBeGreaterThan(2), { timeout: 8000 });
    const afters = seen.filter((r) => r.path === `${JOBS}/j1/logs`).map((r) => r.query.get('after'));
    expect(afters.slice(0, 3)).toEqual(['0', '1000', '1002']);
    expect(within(log).getAllByText(/line \d+/)).toHaveLength(1002);
  }, 20_000);

  it('reads the last log lines of a job that ends while it is open', async () => {
    let reads = 0;
    const ended = { ...FAILED, id: 'j1', name: 'ledgerlink-v2', attempt: 1 };
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([reads > 0 ? ended : TRAINING]),
      [`GET ${JOBS}/j1`]: () => {
        reads += 1;
        return json(reads > 1 ? ended : TRAINING);
      },
      [`GET ${JOBS}/j1/logs`]: (request) => {
        const after = Number(request.query.get('after'));
        const lines =
          reads > 1 && after < 2
            ? [{ id: 2, attempt: 1, level: 'error', message: 'failed (diverged): the loss diverged', created_at: '2025-01-01T10:02:00Z' }]
            : after === 0
              ? [{ id: 1, attempt: 1, level: 'info', message: 'training the LoRA adapter', created_at: '2025-01-01T10:01:00Z' }]
              : [];
        return json({ job_id: 'j1', next_after: lines.at(-1)?.id ?? after, lines });
      },
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}&job=j1`, '/fine-tuning', <FineTuningPage />);
    const log = await screen.findByRole('log', { name: 'Log of ledgerlink-v2' });
    expect(log).toHaveTextContent('training the LoRA adapter');
    const detail = screen.getByRole('region', { name: 'Job ledgerlink-v2' });
    await within(detail).findByText('Failed: diverged', undefined, { timeout: 8000 });
    await waitFor(() => expect(log).toHaveTextContent('failed (diverged): the loss diverged'));
  }, 20_000);

  it('shows why a job stopped and what the gate said', async () => {
    const gated = job({
      id: 'j4',
      name: 'too-weak',
      status: 'failed',
      reason: { code: 'promotion_gate_failed', message: 'the adapter does not beat the base model' },
      evaluation: {
        base: { exact_match: 0, sdk_api_recall: 0, edit_similarity: 0.12, syntax_validity: 0.1 },
        adapter_scores: { exact_match: 0, sdk_api_recall: 0.01, edit_similarity: 0.11, syntax_validity: null },
        gate: { passed: false, reasons: ['SDK-API recall gain +0.010 is below the required +0.050'] },
        examples: 6,
        sdk_examples: 6,
      },
    });
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([gated]),
      [`GET ${JOBS}/j4`]: () => json(gated),
      [`GET ${JOBS}/j4/logs`]: () => json({ job_id: 'j4', next_after: 0, lines: [] }),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}&job=j4`, '/fine-tuning', <FineTuningPage />);
    const detail = await screen.findByRole('region', { name: 'Job too-weak' });
    expect(detail).toHaveTextContent('Failed: promotion_gate_failed');
    expect(detail).toHaveTextContent('the adapter does not beat the base model');
    expect(detail).toHaveTextContent('Promotion gate:not passed');
    expect(within(detail).getByRole('list', { name: 'Why the gate was not passed' })).toHaveTextContent(
      'SDK-API recall gain +0.010 is below the required +0.050',
    );
    const scores = within(detail).getByRole('table', { name: 'Base model vs adapter' });
    const syntax = within(scores).getByRole('rowheader', { name: 'Syntax validity' }).closest('tr')!;
    expect(syntax).toHaveTextContent('0.100——');
    expect(within(scores).getByRole('rowheader', { name: 'Edit similarity' }).closest('tr')).toHaveTextContent('−0.010');
    expect(detail).toHaveTextContent('not registered');
    expect(await within(detail).findByText('No log lines yet')).toBeInTheDocument();
  });

  it('cancels a running job and retries a failed one', async () => {
    let jobs = [TRAINING, FAILED];
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json(jobs),
      [`POST ${JOBS}/j1/cancel`]: () => {
        jobs = [{ ...TRAINING, cancel_requested: true }, FAILED];
        return json(jobs[0]);
      },
      [`POST ${JOBS}/j3/retry`]: () => {
        jobs = [jobs[0]!, { ...FAILED, status: 'queued', attempt: 3, reason: null }];
        return json(jobs[1], 202);
      },
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}`, '/fine-tuning', <FineTuningPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Cancel ledgerlink-v2' }));
    expect(await screen.findByText(/ledgerlink-v2: cancel requested/)).toBeInTheDocument();
    await waitFor(() => expect(rowOf('ledgerlink-v2')).toHaveTextContent('stopping…'));
    expect(within(rowOf('ledgerlink-v2')).queryByRole('button', { name: 'Cancel ledgerlink-v2' })).toBeNull();

    await userEvent.click(screen.getByRole('button', { name: 'Retry wild-lr' }));
    expect(await screen.findByText('wild-lr: attempt 3 queued')).toBeInTheDocument();
    await waitFor(() => expect(rowOf('wild-lr')).toHaveTextContent('queued'));
    expect(seen.filter((r) => r.method === 'POST').map((r) => r.path)).toEqual([`${JOBS}/j1/cancel`, `${JOBS}/j3/retry`]);
  });

  it('shows the refusal of a cancel next to the job', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([TRAINING]),
      [`POST ${JOBS}/j1/cancel`]: () => apiError(409, 'job_finished', 'The job has already succeeded'),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}`, '/fine-tuning', <FineTuningPage />);
    await userEvent.click(await screen.findByRole('button', { name: 'Cancel ledgerlink-v2' }));
    const alert = await within(rowOf('ledgerlink-v2')).findByRole('alert');
    expect(alert).toHaveTextContent('The job has already succeeded');
  });

  it('submits a job from the form: repositories with their roles, base model, preset', async () => {
    const { seen } = installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([]),
      [`POST ${JOBS}`]: (request) => json(job({ id: 'j5', name: (request.body as { name: string }).name }), 201),
      [`GET ${JOBS}/j5`]: () => json(job({ id: 'j5', name: 'payments-sdk' })),
      [`GET ${JOBS}/j5/logs`]: () => json({ job_id: 'j5', next_after: 0, lines: [] }),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}`, '/fine-tuning', <FineTuningPage />);
    expect(await screen.findByText('No fine-tuning jobs yet')).toBeInTheDocument();
    const user = userEvent.setup();
    await fill(user, screen.getByLabelText(/Job name/), 'payments-sdk');
    await fill(user, screen.getByLabelText(/^Repository 1/), '/srv/code/ledgerlink');
    await fill(user, screen.getByLabelText(/^Repository 2/), 'https://git.acme.internal/payments.git');
    await fill(user, screen.getByLabelText(/^Credentials secret 2/), 'acme-git');
    await user.click(screen.getByRole('button', { name: 'Add repository' }));
    await fill(user, screen.getByLabelText(/^Repository 3/), '/srv/code/billing');
    // Base models only, and one without FIM tokens is marked as such.
    const base = screen.getByLabelText(/Base model/) as HTMLSelectElement;
    expect([...base.options].map((o) => o.textContent)).toEqual(['Choose a base model', 'cove-tiny', 'chat-7b (no FIM tokens)']);
    await user.selectOptions(base, 'cove-tiny');
    await user.selectOptions(screen.getByLabelText(/Preset/), 'medium');
    await fill(user, screen.getByLabelText(/Max steps/), '400');
    await user.click(screen.getByRole('button', { name: 'Start fine-tuning' }));

    expect(await screen.findByText('Job payments-sdk queued')).toBeInTheDocument();
    const post = seen.find((r) => r.method === 'POST')!;
    expect(post.body).toEqual({
      name: 'payments-sdk',
      base_model: 'cove-tiny',
      preset: 'medium',
      adapter_name: null,
      repositories: [
        { location: '/srv/code/ledgerlink', role: 'sdk', credentials_secret: null },
        { location: 'https://git.acme.internal/payments.git', role: 'consumer', credentials_secret: 'acme-git' },
        { location: '/srv/code/billing', role: 'consumer', credentials_secret: null },
      ],
      hyperparameters: { max_steps: 400 },
    });
    // The new job opens, and the form is empty again.
    expect(await screen.findByRole('region', { name: 'Job payments-sdk' })).toBeInTheDocument();
    expect(screen.getByLabelText(/Job name/)).toHaveValue('');
  }, 20_000);

  it('shows a refused job next to the field the API names', async () => {
    installFakeApi({
      'GET /api/v1/bus': () => json([BU]),
      [`GET ${JOBS}`]: () => json([]),
      [`POST ${JOBS}`]: () =>
        json(
          {
            error: {
              code: 'credentials_in_url',
              message: 'repositories[1].location: do not put credentials in the URL; store them in a secret',
              param: 'repositories[1].location',
            },
          },
          422,
        ),
      [`GET /api/v1/bus/${BU.id}/models`]: () => json(BASES),
    });
    renderAt(`/fine-tuning?bu=${BU.id}`, '/fine-tuning', <FineTuningPage />);
    await screen.findByText('No fine-tuning jobs yet');
    const user = userEvent.setup();
    await fill(user, screen.getByLabelText(/Job name/), 'x');
    await fill(user, screen.getByLabelText(/^Repository 1/), '/srv/sdk');
    await fill(user, screen.getByLabelText(/^Repository 2/), 'https://bob:pw@git.acme.internal/a.git');
    await user.selectOptions(screen.getByLabelText(/Base model/), 'cove-tiny');
    await user.click(screen.getByRole('button', { name: 'Start fine-tuning' }));
    const field = screen.getByLabelText(/^Repository 2/);
    await waitFor(() => expect(field).toHaveAttribute('aria-invalid', 'true'));
    expect(field).toHaveAccessibleDescription(/do not put credentials in the URL/);
    expect(screen.getByLabelText(/^Repository 1/)).not.toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByRole('alert')).toHaveTextContent('The platform API refused this');
  }, 20_000);
});
