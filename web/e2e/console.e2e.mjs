// The console against the real local stack, in Debian's Chromium, with role locators.
// Screenshots of every page land in web/test-artifacts/.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { platformServesConsole, serveConsole, startStack, webDir } from './stack.mjs';

const ARTIFACTS = join(webDir, 'test-artifacts');
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const WAIT = { timeout: 30_000 };

let stack;
let consoleServer = null;
let base;
let browser;
let context;
let page;
let demoBu;
let shotNumber = 0;
const suffix = randomUUID().slice(0, 6);
const newSlug = `e2e-${suffix}`;
let ideKey = null;

async function shot(name) {
  shotNumber += 1;
  const file = join(ARTIFACTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
  // From the top, so the fixed header sits where it belongs in the full-page image.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function admin(path, init = {}) {
  const response = await fetch(stack.platformUrl + path, {
    ...init,
    headers: { Authorization: `Bearer ${stack.adminKey}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function openPage(label, path) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
  await page.waitForURL((url) => url.pathname === path, WAIT);
  await page.getByRole('heading', { level: 1, name: label }).waitFor(WAIT);
}

async function analyticsInOpenApi() {
  const doc = await (await fetch(`${stack.platformUrl}/openapi.json`)).json();
  return Object.keys(doc.paths).includes('/api/v1/bus/{bu_id}/metrics');
}

before(async () => {
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  stack = await startStack();
  if (await platformServesConsole(stack.platformUrl)) {
    base = stack.platformUrl;
    console.log('e2e: the platform API serves the console itself');
  } else {
    consoleServer = await serveConsole(stack.platformUrl);
    base = consoleServer.url;
    console.log(`e2e: the platform does not serve web/dist yet; serving it at ${base} with /api proxied`);
  }
  const bus = await admin('/api/v1/bus');
  demoBu = bus.body.find((b) => b.slug === 'demo');
  assert.ok(demoBu, 'the local stack has a demo BU');
  browser = await chromium.launch({ executablePath: process.env.COVE_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
  context = await browser.newContext({ viewport: { width: 1440, height: 960 }, acceptDownloads: true });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  page = await context.newPage();
  page.setDefaultTimeout(WAIT.timeout);
});

after(async () => {
  await browser?.close();
  await consoleServer?.close();
  await stack?.stop();
});

/** A test that leaves a screenshot of the page when it fails. */
function step(name, fn) {
  test(name, async () => {
    try {
      await fn();
    } catch (error) {
      const file = join(ARTIFACTS, `FAILED-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
      await page?.screenshot({ path: file, fullPage: true }).catch(() => {});
      throw error;
    }
  });
}

describe('Cove console on the local stack', { concurrency: false }, () => {
  step('an unknown key is refused with the API reason', async () => {
    await page.goto(`${base}/overview`);
    await page.waitForURL('**/login', WAIT);
    await page.getByRole('heading', { name: 'Sign in to Cove' }).waitFor();
    await page.getByLabel('Admin API key').fill('cove_nosuchkey_0000000000000000');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    const alert = page.getByRole('alert').filter({ hasText: 'Sign-in failed' });
    await alert.waitFor();
    assert.match(await alert.textContent(), /invalid|unknown|not valid/i);
    await shot('login-refused');
  });

  step('dev login with the admin key, by keyboard', async () => {
    await page.goto(`${base}/login`);
    const input = page.getByLabel('Admin API key');
    await input.fill('');
    await input.focus();
    await page.keyboard.type(stack.adminKey);
    await page.keyboard.press('Enter');
    await page.waitForURL('**/overview**', WAIT);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    // The heading takes focus on arrival, for keyboard and screen-reader users.
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'H1');
  });

  step('create a business unit, change its quota, suspend and resume it', async () => {
    await openPage('Business units', '/business-units');
    await page.getByRole('table', { name: 'Business units' }).getByRole('rowheader', { name: 'demo', exact: true }).waitFor();
    await page.getByRole('button', { name: 'Create business unit' }).click();
    const dialog = page.getByRole('dialog', { name: 'Create business unit' });
    await dialog.getByLabel('Slug').fill('Not A Slug');
    await dialog.getByLabel('Name').fill(`E2E ${suffix}`);
    await dialog.getByRole('button', { name: 'Create business unit' }).click();
    // The API's 422 names the field.
    await dialog.getByRole('alert').filter({ hasText: 'slug' }).waitFor();
    await dialog.getByLabel('Slug').fill(newSlug);
    await dialog.getByLabel('GPU quota').fill('1');
    await dialog.getByRole('button', { name: 'Create business unit' }).click();
    await dialog.waitFor({ state: 'hidden' });
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: newSlug, exact: true }) });
    await row.waitFor();
    assert.match(await row.textContent(), /active/);

    await row.getByRole('button', { name: `Edit quotas of ${newSlug}` }).click();
    const edit = page.getByRole('dialog', { name: `Quotas of ${newSlug}` });
    await edit.getByLabel('GPU quota').fill('4');
    await edit.getByRole('button', { name: 'Save' }).click();
    await edit.waitFor({ state: 'hidden' });
    await page.waitForFunction(
      (slug) => [...document.querySelectorAll('tr')].some((tr) => tr.textContent.includes(slug) && tr.children[3]?.textContent === '4'),
      newSlug,
    );

    await row.getByRole('button', { name: `Suspend ${newSlug}` }).click();
    await page.getByRole('dialog', { name: `Suspend ${newSlug}` }).getByRole('button', { name: 'Suspend' }).click();
    await row.getByText('suspended').waitFor();
    const saved = (await admin('/api/v1/bus')).body.find((b) => b.slug === newSlug);
    assert.equal(saved.status, 'suspended');
    assert.equal(saved.gpu_quota, 4);
    await shot('business-units');
    await row.getByRole('button', { name: `Resume ${newSlug}` }).click();
    await page.getByRole('dialog', { name: `Resume ${newSlug}` }).getByRole('button', { name: 'Resume' }).click();
    await row.getByText('active').waitFor();
  });

  step('create an API key in the new BU: shown once, copied; then revoke it', async () => {
    const created = (await admin('/api/v1/bus')).body.find((b) => b.slug === newSlug);
    await openPage('API keys', '/api-keys');
    // Switch business unit with the header's picker.
    await page.getByLabel('Business unit').selectOption(created.id);
    await page.getByRole('heading', { name: `Keys of ${newSlug}` }).waitFor();
    await page.getByText('No API keys yet').waitFor();
    await page.getByLabel('Key name').fill('e2e-laptop');
    await page.getByRole('button', { name: 'Create key' }).click();
    const dialog = page.getByRole('dialog', { name: 'Your new API key' });
    const key = (await dialog.getByTestId('new-api-key').textContent()).trim();
    assert.match(key, /^cove_[A-Za-z0-9]+_\S+$/);
    await dialog.getByRole('button', { name: 'Copy key' }).click();
    await dialog.getByRole('button', { name: 'Copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
    await shot('api-key-shown-once');
    await dialog.getByRole('button', { name: 'I have stored the key' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await page.getByText(key).count(), 0, 'the key is never shown again');
    await page.getByRole('rowheader', { name: 'e2e-laptop' }).waitFor();

    // The key works at the gateway until it is revoked.
    const models = await fetch(`${stack.gatewayUrl}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(models.status, 200);
    await page.getByRole('button', { name: 'Revoke e2e-laptop' }).click();
    await page.getByRole('dialog', { name: 'Revoke e2e-laptop?' }).getByRole('button', { name: 'Revoke key' }).click();
    await page.getByRole('row').filter({ hasText: 'e2e-laptop' }).getByText('revoked').waitFor();
    let status = 200;
    for (let i = 0; i < 20 && status === 200; i += 1) {
      status = (await fetch(`${stack.gatewayUrl}/v1/models`, { headers: { Authorization: `Bearer ${key}` } })).status;
      if (status === 200) await new Promise((ok) => setTimeout(ok, 250));
    }
    assert.equal(status, 401, 'the gateway refuses a revoked key');
    await shot('api-keys');
  });

  step('models and deployments: the demo deployment is listed; a bad registration shows the API error', async () => {
    await page.goto(`${base}/deployments?bu=${demoBu.id}`);
    await page.getByRole('heading', { level: 1, name: 'Models & deployments' }).waitFor();
    const table = page.getByRole('table', { name: 'Deployments' });
    await table.waitFor();
    const rows = await table.getByRole('row').count();
    assert.ok(rows >= 2, 'the demo BU has a deployment');
    assert.match(await table.textContent(), new RegExp(stack.model));
    assert.match(await table.textContent(), /ready|pending|degraded|unavailable/);
    await page.getByLabel('Deployment name').fill('second');
    await page.getByLabel('Catalog model').fill('no-such-model');
    await page.getByLabel('Endpoint URL').fill('http://127.0.0.1:9');
    await page.getByRole('button', { name: 'Register deployment' }).click();
    await page.getByRole('alert').filter({ hasText: 'no-such-model' }).waitFor();
    await shot('deployments');
  });

  step('edit the demo policy and watch the dry run change from redact to block', async () => {
    await page.goto(`${base}/policies?bu=${demoBu.id}`);
    await page.getByRole('heading', { level: 1, name: 'Policies' }).waitFor();
    await page.getByRole('button', { name: 'Run dry run' }).click();
    const outcome = page.getByTestId('dry-run-outcome');
    await outcome.waitFor();
    assert.equal(await outcome.textContent(), 'Forwarded with changes');
    assert.match(await page.getByTestId('dry-run-text').textContent(), /<redacted:github_token>/);
    await shot('policies-redact');

    const editor = page.getByLabel('Policy overrides (JSON)');
    await editor.fill('{"content": {"actions": {"no_such_secret": "block"}}}');
    await page.getByRole('button', { name: 'Save policy' }).click();
    const refused = page.getByRole('alert').filter({ hasText: 'The platform API refused this' });
    await refused.waitFor();
    assert.match(await refused.textContent(), /no_such_secret/);
    assert.match(await refused.textContent(), /content\.actions/);
    await shot('policies-invalid');

    await editor.fill('{"content": {"actions": {"github_token": "block"}}}');
    await page.getByRole('button', { name: 'Save policy' }).click();
    await page.waitForFunction(() => document.querySelector('[data-testid="dry-run-outcome"]')?.textContent?.startsWith('Blocked'));
    assert.match(await page.getByTestId('dry-run-text').textContent(), /nothing/);
    assert.match(await page.getByRole('table', { name: 'Findings' }).textContent(), /block/);
    const policy = await admin(`/api/v1/bus/${demoBu.id}/policy`);
    assert.deepEqual(policy.body.document, { content: { actions: { github_token: 'block' } } });
    await shot('policies-block');
  });

  step('send a completion and IDE events through the gateway; the overview shows what they imply', async () => {
    // A key for an IDE in the demo BU, created through the console.
    await page.goto(`${base}/api-keys?bu=${demoBu.id}`);
    await page.getByLabel('Key name').fill('e2e-ide');
    await page.getByRole('button', { name: 'Create key' }).click();
    const dialog = page.getByRole('dialog', { name: 'Your new API key' });
    ideKey = (await dialog.getByTestId('new-api-key').textContent()).trim();
    await dialog.getByRole('button', { name: 'I have stored the key' }).click();

    const gw = (path, body) =>
      fetch(stack.gatewayUrl + path, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ideKey}`, 'content-type': 'application/json', 'user-agent': 'vscode/1.99 cove-e2e' },
        body: JSON.stringify(body),
      });
    const ids = [];
    for (const prompt of ['def add(a, b):', 'class Stack:']) {
      const reply = await gw('/v1/completions', { model: stack.model, prompt, max_tokens: 8 });
      assert.equal(reply.status, 200, await reply.clone().text());
      ids.push((await reply.json()).id);
    }
    const now = new Date().toISOString();
    const event = (type, extra) => ({ id: randomUUID(), type, timestamp: now, language: 'python', ide: 'vscode', ...extra });
    const events = [
      event('completion.shown', { completion_id: ids[0], lines: 3 }),
      // A re-render of the same suggestion is not a second view.
      event('completion.shown', { completion_id: ids[0], lines: 3 }),
      event('completion.accepted', { completion_id: ids[0], kind: 'full', lines: 3, chars: 40 }),
      event('completion.shown', { completion_id: ids[1], lines: 2 }),
      event('completion.rejected', { completion_id: ids[1] }),
      event('edit.applied', { feature: 'chat', lines_added: 5, lines_deleted: 1 }),
      event('edit.discarded', { feature: 'chat' }),
    ];
    const sent = await gw('/v1/events', { events });
    assert.ok(sent.status < 300, await sent.clone().text());

    await page.goto(`${base}/overview?bu=${demoBu.id}&by=language`);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    if (!(await analyticsInOpenApi())) {
      await page.getByText('Analytics API not available').waitFor();
      await shot('overview');
      console.log('e2e: NOTE: the platform has no analytics API; checked the "not available" state instead of the numbers');
      return;
    }
    // Events reach Postgres in batches and the dashboards read rollups made by Celery beat:
    // reload until they are counted.
    const acceptance = page.getByRole('group', { name: 'Acceptance rate (suggestions)' });
    let text = '';
    for (let attempt = 0; attempt < 45; attempt += 1) {
      await acceptance.waitFor();
      text = (await acceptance.textContent()) ?? '';
      if (text.includes('of 2 shown')) break;
      await page.waitForTimeout(2000);
      await page.reload();
    }
    if (!text.includes('of 2 shown')) {
      await shot('overview-not-counted');
      const logs = join(stack.home, 'state', 'logs');
      const tail = (name) => {
        try {
          return readFileSync(join(logs, name), 'utf8').split('\n').filter((l) => /analytics|rollup|Error|error/.test(l)).slice(-14).join('\n');
        } catch {
          return '(no log)';
        }
      };
      assert.fail(
        `the overview did not count the events within 90 s (it shows: ${text}).\n` +
          `The analytics rollup must run (Celery beat task analytics.rollup).\n` +
          `beat.log:\n${tail('beat.log')}\nworker.log:\n${tail('worker.log')}`,
      );
    }
    // 1 distinct accepted ÷ 2 distinct shown (the re-render does not count).
    assert.match(text, /50\.0%/);
    assert.match(text, /1 accepted of 2 shown/);
    const lines = await page.getByRole('group', { name: 'Acceptance rate (lines)' }).textContent();
    assert.match(lines, /60\.0%/); // 3 of 5 lines
    assert.match(lines, /3 lines accepted of 5 lines shown/);
    const applied = await page.getByRole('group', { name: 'Lines applied' }).textContent();
    assert.match(applied, /8 lines/); // 3 from the accepted completion + 5 from the applied chat edit
    assert.match(applied, /completion 3/);
    assert.match(applied, /chat 5/);
    assert.match(await page.getByRole('group', { name: 'Review-not-applied rate' }).textContent(), /50\.0%/);
    assert.match(await page.getByRole('group', { name: 'Active users' }).textContent(), /1 user/);
    assert.match(await page.getByRole('group', { name: 'Active users' }).textContent(), /1 user engaged/);
    assert.doesNotMatch(await page.getByRole('group', { name: 'Total latency (p50)' }).textContent(), /insufficient data/);
    const breakdown = page.getByRole('table', { name: 'Breakdown by language' });
    await breakdown.getByRole('rowheader', { name: 'python' }).waitFor();
    // Filters live in the URL.
    await page.getByLabel('IDE').fill('no-such-ide');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/ide=no-such-ide/);
    await page.getByText('No usage in this period').waitFor();
    await page.goBack();
    await acceptance.waitFor();
    await shot('overview');
  });

  step('model versions: deploy a shared instance, release an adapter as canary, compare, promote and roll back', async () => {
    // Platform-admin set-up the console has no page for yet: grant the base model to the demo
    // BU and register a LoRA adapter of it (a second model version).
    const catalog = (await admin('/api/v1/models')).body;
    const baseModel = catalog.find((m) => m.name === stack.model);
    assert.ok(baseModel, `the catalog has ${stack.model}`);
    assert.ok((await admin(`/api/v1/models/${baseModel.id}/grants/${demoBu.id}`, { method: 'PUT', body: '{}' })).status < 300);
    const adapterDir = join(stack.home, 'adapter-e2e');
    execFileSync(stack.python, [join(webDir, 'e2e', 'make_adapter.py'), baseModel.location, adapterDir]);
    execFileSync('chmod', ['-R', 'a+rX', adapterDir]);
    const adapter = await admin(`/api/v1/bus/${demoBu.id}/adapters`, {
      method: 'POST',
      body: JSON.stringify({ name: `${stack.model}-e2e`, base_model: stack.model, location: adapterDir }),
    });
    assert.equal(adapter.status, 201, JSON.stringify(adapter.body));

    // A shared (multi-LoRA) deployment on the running vLLM, through the console's form.
    await page.goto(`${base}/deployments?bu=${demoBu.id}`);
    await page.getByRole('table', { name: 'Models' }).getByRole('rowheader', { name: `${stack.model}-e2e` }).waitFor();
    await page.getByLabel('Deployment name').fill('shared');
    await page.getByLabel('Catalog model').fill(stack.model);
    await page.getByLabel('Mode', { exact: true }).selectOption('shared');
    await page.getByLabel('Endpoint URL').fill(stack.vllmUrl);
    await page.getByRole('button', { name: 'Register deployment' }).click();
    await page.getByRole('table', { name: 'Deployments' }).getByRole('rowheader', { name: 'shared' }).waitFor();
    const shared = (await admin(`/api/v1/bus/${demoBu.id}/deployments`)).body.find((d) => d.name === 'shared');
    const attach = await admin(`/api/v1/bus/${demoBu.id}/deployments/${shared.id}/adapters`, {
      method: 'POST',
      body: JSON.stringify({ model: `${stack.model}-e2e` }),
    });
    assert.ok(attach.status < 300, JSON.stringify(attach.body));
    // The reconciler hot-loads the adapter into vLLM; the console shows its state.
    for (let i = 0; i < 60; i += 1) {
      await page.reload();
      const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'shared' }) });
      if (/loaded/.test((await row.textContent()) ?? '')) break;
      await page.waitForTimeout(2000);
    }
    assert.match((await page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'shared' }) }).textContent()) ?? '', /loaded/);
    await shot('deployments-with-adapter');

    await openPage('Model versions', '/model-versions');
    const form = page.getByRole('form', { name: 'Set the release' });
    await form.getByLabel('Stable version').selectOption(stack.model);
    await form.getByLabel('Canary version').selectOption(`${stack.model}-e2e`);
    await form.getByLabel('Canary share of users (%)').fill('50');
    await form.getByRole('button', { name: 'Save release' }).click();
    const canary = page.getByRole('group', { name: 'Canary' });
    await canary.getByText(`${stack.model}-e2e`).waitFor();
    assert.match((await canary.textContent()) ?? '', /50% of users/);
    // The comparison of control and canary says it has too little data, never a bare 0 %.
    await page.getByRole('status').filter({ hasText: 'Not enough data' }).waitFor();
    const comparison = page.getByRole('table', { name: 'Model version comparison' });
    assert.match((await comparison.textContent()) ?? '', new RegExp(`Candidate: ${stack.model}-e2e`));
    await shot('model-versions-canary');

    await page.getByRole('button', { name: `Promote ${stack.model}-e2e` }).click();
    await page.getByRole('dialog', { name: `Promote ${stack.model}-e2e?` }).getByRole('button', { name: 'Promote' }).click();
    await page.getByRole('group', { name: 'Stable' }).getByText(`${stack.model}-e2e`, { exact: true }).waitFor();
    let release = (await admin(`/api/v1/bus/${demoBu.id}/release`)).body;
    assert.equal(release.stable, `${stack.model}-e2e`);
    assert.equal(release.previous_stable, stack.model);
    // A completion without a model name is now served by the promoted adapter.
    const served = await fetch(`${stack.gatewayUrl}/v1/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ideKey ?? stack.demoKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'def f(x):', max_tokens: 4 }),
    });
    assert.equal(served.status, 200, await served.clone().text());
    assert.equal(served.headers.get('x-cove-model-version'), `${stack.model}-e2e`);
    await shot('model-versions-promoted');

    await page.getByRole('button', { name: new RegExp(`^Roll back to ${stack.model}$`) }).click();
    await page.getByRole('dialog', { name: 'Roll back?' }).getByRole('button', { name: 'Roll back' }).click();
    await page.getByRole('group', { name: 'Stable' }).getByText(stack.model, { exact: true }).waitFor();
    release = (await admin(`/api/v1/bus/${demoBu.id}/release`)).body;
    assert.equal(release.stable, stack.model);
    assert.deepEqual(
      release.history.map((h) => h.action),
      ['rollback', 'promote', 'set'],
    );
    await page.getByText('History (3)').click();
    await page.getByRole('table', { name: 'Release history' }).waitFor();
    await shot('model-versions');
  });

  step('fine-tuning: a refused job names its field; a submitted one fails with its reason and is retried', async () => {
    await openPage('Fine-tuning jobs', '/fine-tuning');
    await page.goto(`${base}/fine-tuning?bu=${demoBu.id}`);
    await page.getByRole('heading', { name: 'Fine-tuning jobs of demo' }).waitFor(WAIT);
    const jobName = `e2e-${suffix}`;
    await page.getByLabel('Job name').fill(jobName);
    await page.getByLabel(/^Repository 1( \*)?$/).fill('/nonexistent/e2e-sdk');
    await page.getByLabel(/^Repository 2( \*)?$/).fill('https://bob:pw@git.example.invalid/apps.git');
    await page.getByLabel('Base model').selectOption(stack.model);
    await page.getByRole('button', { name: 'Start fine-tuning' }).click();
    await page.getByText(/do not put credentials in the URL/).first().waitFor(WAIT);
    await shot('fine-tuning-refused');
    // Accepted, started by the real worker, and failed by the runner: the directories do not exist.
    await page.getByLabel(/^Repository 2( \*)?$/).fill('/nonexistent/e2e-apps');
    await page.getByRole('button', { name: 'Start fine-tuning' }).click();
    const detail = page.getByRole('region', { name: `Job ${jobName}` });
    await detail.waitFor(WAIT);
    await detail.getByText('Failed: repository_unreachable').waitFor({ timeout: 180_000 });
    await detail.getByRole('log', { name: `Log of ${jobName}` }).getByText(/failed \(repository_unreachable\)/).waitFor(WAIT);
    const row = page.getByRole('row', { name: new RegExp(`^${jobName}`) });
    await row.getByText('repository_unreachable').waitFor(WAIT);
    await shot('fine-tuning-failed');
    await detail.getByRole('button', { name: `Retry ${jobName}` }).click();
    await page.getByText(`${jobName}: attempt 2 queued`).waitFor(WAIT);
    const jobs = (await admin(`/api/v1/bus/${demoBu.id}/finetune-jobs`)).body;
    const job = jobs.find((j) => j.name === jobName);
    assert.equal(job.attempt, 2);
    assert.equal(job.adapter_model_id, null);
  });

  step('members and audit pages say what they can and cannot do yet', async () => {
    await openPage('Members & roles', '/members');
    const members = page.getByRole('table', { name: 'Members' });
    await members.getByRole('rowheader', { name: 'admin', exact: true }).waitFor(WAIT);
    await page.getByText('Keycloak is not connected').waitFor(WAIT);
    await shot('members');
    await openPage('Audit log', '/audit');
    const doc = await (await fetch(`${stack.platformUrl}/openapi.json`)).json();
    if (Object.keys(doc.paths).includes('/api/v1/audit')) {
      const log = page.getByRole('table', { name: 'Audit log' });
      await log.waitFor();
      assert.match(await log.textContent(), /policy\.update/);
      await page.getByLabel('Action').fill('policy.update');
      await page.getByRole('button', { name: 'Apply filters' }).click();
      await page.waitForURL(/action=policy\.update/);
      await page.getByRole('button', { name: /^Show changes of policy\.update/ }).first().click();
      await page.getByRole('table', { name: /^Changes of policy\.update/ }).waitFor();
      const download = page.waitForEvent('download');
      await page.getByRole('button', { name: 'Export CSV' }).click();
      assert.match((await download).suggestedFilename(), /\.csv$/);
    } else {
      await page.getByText('Audit log API not available').waitFor();
    }
    await shot('audit');
  });

  step('prompt logs: with full logging a redacted prompt is kept and the BU admin reads it', async () => {
    const current = (await admin(`/api/v1/bus/${demoBu.id}/policy`)).body.document ?? {};
    const document = { ...current, content: { ...(current.content ?? {}), actions: {} }, logging: { mode: 'full', retention_days: 7 } };
    const put = await admin(`/api/v1/bus/${demoBu.id}/policy`, { method: 'PUT', body: JSON.stringify({ document }) });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    // A credential-shaped value the default policy redacts (the test writes it; it is not real).
    const secret = 'ghp_' + 'Zq8Xv2Lm4Np6Rt1Ws3Yu5Ab7Cd9Ef0Gh2Jk4';
    const prompt = `GITHUB_TOKEN = "${secret}"\ndef e2e_logged():`;
    let kept = null;
    // The gateway picks up the policy change within seconds and writes its log each second.
    for (let i = 0; i < 40 && !kept; i += 1) {
      const reply = await fetch(`${stack.gatewayUrl}/v1/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ideKey ?? stack.demoKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: stack.model, prompt, max_tokens: 4 }),
      });
      await new Promise((r) => setTimeout(r, 500));
      // For a moment the gateway still enforces the previous policy (github_token: block).
      if (reply.status === 403) continue;
      assert.equal(reply.status, 200, await reply.clone().text());
      const logs = (await admin(`/api/v1/bus/${demoBu.id}/prompt-logs?limit=5`)).body;
      kept = logs.entries.find((e) => e.mode === 'full' && (e.prompt ?? '').includes('e2e_logged'));
    }
    assert.ok(kept, 'no full prompt log entry appeared');
    assert.ok(!kept.prompt.includes(secret), 'the secret reached the prompt log');
    assert.match(kept.prompt, /<redacted:github_token>/);

    await page.goto(`${base}/prompt-logs?bu=${demoBu.id}`);
    await page.getByRole('heading', { level: 1, name: 'Prompt logs' }).waitFor(WAIT);
    const table = page.getByRole('table', { name: 'Prompt logs' });
    await table.waitFor(WAIT);
    await table.getByRole('button', { name: /^Show text of the completion/ }).first().click();
    const shown = page.getByLabel('Prompt text').first();
    await shown.waitFor(WAIT);
    const text = await shown.textContent();
    assert.match(text, /<redacted:github_token>/);
    assert.ok(!text.includes(secret));
    await shot('prompt-logs');
    const after = await admin(`/api/v1/bus/${demoBu.id}/policy`, { method: 'PUT', body: JSON.stringify({ document: current }) });
    assert.equal(after.status, 200, JSON.stringify(after.body));
  });

  step('every page renders without a blank state for a BU with no data', async () => {
    const fresh = (await admin('/api/v1/bus')).body.find((b) => b.slug === newSlug);
    await page.goto(`${base}/overview?bu=${fresh.id}`);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.getByRole('status').or(page.getByRole('alert')).first().waitFor();
    await shot('overview-empty-bu');
    await page.goto(`${base}/deployments?bu=${fresh.id}`);
    await page.getByText('No models deployed').waitFor();
    await shot('deployments-empty');
  });

  step('sign out returns to the sign-in page', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/login', WAIT);
    await page.getByText('You signed out.').waitFor();
    await shot('signed-out');
  });
});
