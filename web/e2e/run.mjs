#!/usr/bin/env node
// `npm run test:e2e`: Playwright (playwright-core) driving Debian's Chromium against the real
// local stack. Installs Chromium with apt-get when it is missing and we are root; otherwise
// exits 77 ("skipped") with the reason.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { distDir, webDir } from './stack.mjs';

export const CHROMIUM = process.env.COVE_CHROMIUM ?? '/usr/bin/chromium';
const SKIP = 77;

function ensureChromium() {
  if (existsSync(CHROMIUM)) return true;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    console.log(
      `e2e: SKIPPED: ${CHROMIUM} is missing and this user cannot install it. ` +
        'Run `sudo apt-get install -y chromium chromium-driver` (or set COVE_CHROMIUM).',
    );
    return false;
  }
  console.log('e2e: installing Chromium (apt-get install -y chromium chromium-driver)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', 'chromium', 'chromium-driver']]) {
    const result = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (result.status !== 0) {
      console.log(`e2e: SKIPPED: apt-get ${args.join(' ')} failed (exit ${result.status}); Chromium cannot be installed here.`);
      return false;
    }
  }
  return existsSync(CHROMIUM);
}

if (!ensureChromium()) process.exit(SKIP);
if (!existsSync(join(distDir, 'index.html'))) {
  console.log('e2e: building the console first (npm run build)');
  execFileSync('npm', ['run', 'build'], { cwd: webDir, stdio: 'inherit' });
}
const result = spawnSync(
  process.execPath,
  // Extra arguments pass through, e.g. `npm run test:e2e -- --test-name-pattern="policy"`.
  ['--test', '--test-concurrency=1', '--test-reporter=spec', ...process.argv.slice(2), join(webDir, 'e2e', 'console.e2e.mjs')],
  { cwd: webDir, stdio: 'inherit', env: { ...process.env, COVE_CHROMIUM: CHROMIUM } },
);
process.exit(result.status ?? 1);
