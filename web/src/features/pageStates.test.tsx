// Every page of the console says what is happening: loading, empty and error states, never a
// blank page; and every control on it has a name and is reachable with the keyboard.
import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import type { ReactElement } from 'react';
import { BU, apiError, installFakeApi, json } from '../test/fakeApi';
import { renderAt, signedIn } from '../test/render';
import { ApiKeysPage } from './api-keys/ApiKeysPage';
import { AuditPage } from './audit/AuditPage';
import { DeploymentsPage } from './deployments/DeploymentsPage';
import { FineTuningPage } from './fine-tuning/FineTuningPage';
import { ModelVersionsPage } from './model-versions/ModelVersionsPage';
import { OverviewPage } from './overview/OverviewPage';
import { PoliciesPage } from './policies/PoliciesPage';
import { PromptLogsPage } from './prompt-logs/PromptLogsPage';
import { metrics, report } from '../test/fixtures';

beforeEach(() => signedIn());
afterEach(() => vi.unstubAllGlobals());

const BU_PATH = `/api/v1/bus/${BU.id}`;

const RELEASE = {
  bu_id: BU.id,
  stable: null,
  canary: null,
  canary_groups: [],
  canary_percent: 0,
  previous_stable: null,
  history: [],
  version: 0,
  updated_at: null,
  updated_by: null,
};

const POLICY = {
  scope: BU.id,
  version: 0,
  document: {},
  effective: { content: { default_action: 'redact' } },
  updated_at: null,
  updated_by: null,
};

interface PageCase {
  name: string;
  url: string;
  path: string;
  element: ReactElement;
  /** The request whose answer the page waits for. */
  main: string;
  loading: string;
  /** Answers that make the page empty (the main request included). */
  empty: Record<string, () => Response>;
  emptyText: RegExp;
}

const never = () => new Promise<Response>(() => {});

const PAGES: PageCase[] = [
  {
    name: 'Overview',
    url: `/overview?bu=${BU.id}&from=2025-01-01&to=2025-01-02`,
    path: '/overview',
    element: <OverviewPage />,
    main: `GET ${BU_PATH}/metrics`,
    loading: 'Loading metrics…',
    empty: { [`GET ${BU_PATH}/metrics`]: () => json(report(metrics({}), [])) },
    emptyText: /No usage in this period/,
  },
  {
    name: 'Model versions',
    url: `/model-versions?bu=${BU.id}`,
    path: '/model-versions',
    element: <ModelVersionsPage />,
    main: `GET ${BU_PATH}/release`,
    loading: 'Loading the release…',
    empty: {
      [`GET ${BU_PATH}/release`]: () => json(RELEASE),
      [`GET ${BU_PATH}/models`]: () => json([]),
      [`GET ${BU_PATH}/deployments`]: () => json([]),
      [`GET ${BU_PATH}/metrics`]: () => json(report(metrics({}), [])),
    },
    emptyText: /No model versions to compare/,
  },
  {
    name: 'API keys',
    url: `/api-keys?bu=${BU.id}`,
    path: '/api-keys',
    element: <ApiKeysPage />,
    main: `GET ${BU_PATH}/api-keys`,
    loading: 'Loading API keys…',
    empty: { [`GET ${BU_PATH}/api-keys`]: () => json([]) },
    emptyText: /No API keys yet/,
  },
  {
    name: 'Models and deployments',
    url: `/deployments?bu=${BU.id}`,
    path: '/deployments',
    element: <DeploymentsPage />,
    main: `GET ${BU_PATH}/deployments`,
    loading: 'Loading deployments…',
    empty: {
      [`GET ${BU_PATH}/deployments`]: () => json([]),
      [`GET ${BU_PATH}/models`]: () => json([]),
      [`GET ${BU_PATH}/capacity`]: () =>
        json({
          bu_id: BU.id,
          gpu_quota: 0,
          gpus_in_use: 0,
          gpus_available: 0,
          max_model_instances: 2,
          managed_instances: 0,
          deployments: [],
        }),
    },
    emptyText: /No models deployed/,
  },
  {
    name: 'Fine-tuning',
    url: `/fine-tuning?bu=${BU.id}`,
    path: '/fine-tuning',
    element: <FineTuningPage />,
    main: `GET ${BU_PATH}/finetune-jobs`,
    loading: 'Loading fine-tuning jobs…',
    empty: {
      [`GET ${BU_PATH}/finetune-jobs`]: () => json([]),
      [`GET ${BU_PATH}/models`]: () => json([]),
    },
    emptyText: /No fine-tuning jobs yet/,
  },
  {
    name: 'Policies',
    url: `/policies?bu=${BU.id}`,
    path: '/policies',
    element: <PoliciesPage />,
    main: `GET ${BU_PATH}/policy`,
    loading: 'Loading the policy…',
    empty: { [`GET ${BU_PATH}/policy`]: () => json(POLICY) },
    // A BU without overrides runs the organisation's default: the page says so.
    emptyText: /No overrides yet/,
  },
  {
    name: 'Audit log',
    url: `/audit?bu=${BU.id}&scope=${BU.id}`,
    path: '/audit',
    element: <AuditPage />,
    main: `GET ${BU_PATH}/audit`,
    loading: 'Loading the audit log…',
    empty: { [`GET ${BU_PATH}/audit`]: () => json({ entries: [], next_before_id: null }) },
    emptyText: /No audit entries/,
  },
  {
    name: 'Prompt logs',
    url: `/prompt-logs?bu=${BU.id}`,
    path: '/prompt-logs',
    element: <PromptLogsPage />,
    main: `GET ${BU_PATH}/prompt-logs`,
    loading: 'Loading prompt logs…',
    empty: { [`GET ${BU_PATH}/prompt-logs`]: () => json({ entries: [], next_cursor: null }) },
    emptyText: /No prompt logs/,
  },
];

describe.each(PAGES)('$name page', (page) => {
  const base = { 'GET /api/v1/bus': () => json([BU]) };

  it('shows a loading state while the API has not answered', async () => {
    installFakeApi({ ...base, ...page.empty, [page.main]: never });
    renderAt(page.url, page.path, page.element);
    const status = await screen.findByText(page.loading);
    expect(status.closest('[role="status"]')).not.toBeNull();
  });

  it('shows the server error with its code instead of a blank page', async () => {
    installFakeApi({
      ...base,
      ...page.empty,
      [page.main]: () => apiError(500, 'internal_error', 'Internal error; see the server log'),
    });
    renderAt(page.url, page.path, page.element);
    await waitFor(() =>
      expect(
        screen.getAllByRole('alert').some((a) => a.textContent?.includes('Internal error; see the server log')),
      ).toBe(true),
    );
    const alert = screen
      .getAllByRole('alert')
      .find((a) => a.textContent?.includes('Internal error; see the server log'))!;
    expect(alert).toHaveTextContent('internal_error');
  });

  it('shows an empty state when there is nothing to list', async () => {
    installFakeApi({ ...base, ...page.empty });
    renderAt(page.url, page.path, page.element);
    expect(await screen.findByText(page.emptyText)).toBeInTheDocument();
  });

  it('names every control and reaches each with the Tab key', async () => {
    installFakeApi({ ...base, ...page.empty });
    renderAt(page.url, page.path, page.element);
    await screen.findByText(page.emptyText);
    const controls = [
      ...screen.queryAllByRole('button'),
      ...screen.queryAllByRole('textbox'),
      ...screen.queryAllByRole('combobox'),
      ...screen.queryAllByRole('link'),
    ].filter((el) => !(el as HTMLButtonElement).disabled);
    expect(controls.length).toBeGreaterThan(0);
    for (const control of controls) expect(control).toHaveAccessibleName();
    const user = userEvent.setup();
    const reached = new Set<Element>();
    for (let i = 0; i < controls.length * 2 + 5; i += 1) {
      await user.tab();
      if (document.activeElement) reached.add(document.activeElement);
    }
    const unreachable = controls.filter((c) => !reached.has(c));
    expect(unreachable.map((c) => c.outerHTML.slice(0, 80))).toEqual([]);
  });
});
