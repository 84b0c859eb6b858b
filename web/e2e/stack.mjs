// Starts the real local stack (`cove up`: Postgres, Redis, vLLM on the CPU, platform API,
// gateway, worker, beat) in a temporary home, and serves the built console.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, chmodSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';

export const webDir = resolve(import.meta.dirname, '..');
export const repoDir = resolve(webDir, '..');
export const distDir = join(webDir, 'dist');

export function freePort() {
  return new Promise((ok, fail) => {
    const server = netServer();
    server.unref();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

function stackEnv(home, gatewayPort, platformPort) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Like tests/e2e: the stack must not pick up the developer's own database or ports.
    if (!k.startsWith('COVE_') || k === 'COVE_CACHE_DIR' || k === 'COVE_VLLM_PYTHON') env[k] = v;
  }
  return {
    ...env,
    COVE_HOME: join(home, 'state'),
    COVE_GATEWAY_PORT: String(gatewayPort),
    COVE_PLATFORM_PORT: String(platformPort),
    COVE_CONSOLE_DIR: distDir,
    // Dashboards read rollups; roll up every few seconds so the test sees its events soon.
    COVE_ANALYTICS_ROLLUP_SECONDS: process.env.COVE_ANALYTICS_ROLLUP_SECONDS ?? '5',
  };
}

export async function startStack({ log = console.log, timeoutMs = 15 * 60_000 } = {}) {
  const python = process.env.COVE_PYTHON ?? join(repoDir, '.venv', 'bin', 'python');
  if (!existsSync(python)) throw new Error(`No Python at ${python}: run \`make bootstrap\` first.`);
  const home = mkdtempSync(join(tmpdir(), 'cove-console-e2e-'));
  // The local Postgres runs as `postgres` when we are root: the directory must be reachable.
  chmodSync(home, 0o755);
  const [gatewayPort, platformPort] = [await freePort(), await freePort()];
  const env = stackEnv(home, gatewayPort, platformPort);
  log(`e2e: starting the local stack in ${home} (platform :${platformPort}, gateway :${gatewayPort})`);
  const child = spawn(python, ['-m', 'cove.platform.cli', 'up'], {
    cwd: home,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const ready = new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the stack did not start in ${timeoutMs / 1000} s:\n${output}`)), timeoutMs);
    const onData = (chunk) => {
      output += chunk.toString();
      if (output.includes('\nCtrl-C')) {
        clearTimeout(timer);
        ok();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`cove up exited with ${code}:\n${output}`));
    });
  });
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGINT');
      const exited = await Promise.race([
        new Promise((ok) => child.once('exit', () => ok(true))),
        new Promise((ok) => setTimeout(() => ok(false), 90_000)),
      ]);
      if (!exited) {
        await new Promise((ok) => {
          const down = spawn(python, ['-m', 'cove.platform.cli', 'down'], { cwd: home, env, stdio: 'ignore' });
          down.on('exit', ok);
        });
      }
    }
    if (process.env.COVE_E2E_KEEP) log(`e2e: kept the stack's files in ${home} (logs in state/logs)`);
    else rmSync(home, { recursive: true, force: true });
  };
  try {
    await ready;
  } catch (error) {
    await stop();
    throw error;
  }
  const demoKey = /Demo API key\s+(cove_\S+)/.exec(output)?.[1];
  const model = /Model\s+(\S+)/.exec(output)?.[1];
  const vllmUrl = /vLLM at (http:\/\/[^)\s]+)/.exec(output)?.[1];
  const adminKey = readFileSync(join(home, 'state', 'admin-api-key'), 'utf8').trim();
  if (!demoKey || !model) {
    await stop();
    throw new Error(`could not read the demo key and model from:\n${output}`);
  }
  log(`e2e: stack up (model ${model})`);
  return {
    home,
    platformUrl: `http://127.0.0.1:${platformPort}`,
    gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
    adminKey,
    demoKey,
    model,
    vllmUrl,
    python,
    output,
    stop,
  };
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
  '.json': 'application/json',
};

/** The first built JavaScript asset, to probe whether the platform serves the console. */
export function builtAsset() {
  const assets = join(distDir, 'assets');
  const js = readdirSync(assets).find((name) => name.endsWith('.js'));
  if (!js) throw new Error(`no JavaScript in ${assets}: run \`npm run build\``);
  return `/assets/${js}`;
}

/** Does the platform API serve the console (its assets and deep links) by itself? */
export async function platformServesConsole(platformUrl) {
  try {
    const asset = await fetch(platformUrl + builtAsset());
    const deep = await fetch(`${platformUrl}/policies?bu=x`, { headers: { Accept: 'text/html' } });
    return asset.ok && (await deep.text()).includes('<div id="root">');
  } catch {
    return false;
  }
}

/**
 * Until the platform serves web/dist itself (a mount for /assets and an SPA fallback), the
 * tests serve it from here and proxy the API to the platform: the same origin for both, as
 * in production.
 */
export async function serveConsole(platformUrl) {
  const upstream = new URL(platformUrl);
  const root = resolve(distDir);
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const proxied = ['/api/', '/openapi.json', '/healthz', '/readyz', '/docs'].some((p) => url.pathname.startsWith(p));
    if (proxied) {
      const forward = httpRequest(
        { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', (error) => {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(String(error));
      });
      req.pipe(forward);
      return;
    }
    let file = normalize(join(root, decodeURIComponent(url.pathname)));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) file = join(root, 'index.html');
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((ok) => server.close(ok)) };
}
