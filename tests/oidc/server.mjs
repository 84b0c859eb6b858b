// A certified OpenID Provider (`oidc-provider`) dressed as Keycloak, for Cove's tests.
//
// No Keycloak server can run where Cove's suite runs, so the token verifier is tested against
// this instead: one provider per realm, each mounted at `/realms/<realm>` so issuers, discovery
// and JWKS URLs have Keycloak's shape, issuing JWT access tokens through `client_credentials`
// whose claims look like Keycloak's (`groups`, `realm_access.roles`, `preferred_username`,
// `azp`, `typ: Bearer`). Every confidential test client stands for one user.
//
// The public clients sign users in as Keycloak's do: `cove-cli` (and its short-lived twins)
// with the device authorization grant (RFC 8628), `cove-console` with the authorization code
// flow and PKCE (S256). Users sign in on oidc-provider's development pages (any password); a
// login name from USERS gets that user's Keycloak-shaped claims. Like Keycloak, the provider
// issues refresh tokens to these clients and answers `slow_down` to a device client that polls
// faster than the interval it was given.
//
// Usage: node server.mjs [--port N] [--realms cove,other]      (or PORT / OIDC_REALMS)
// Test-only admin endpoints (rotate keys, count JWKS downloads) live under `/__test/` and need
// the header `x-test-admin-token: $OIDC_TEST_ADMIN_TOKEN`; without that variable they are off.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    realms: { type: 'string' },
  },
});

const port = Number(args.port ?? process.env.PORT ?? 0);
const realmNames = (args.realms ?? process.env.OIDC_REALMS ?? 'cove,other')
  .split(',')
  .map((name) => name.trim())
  .filter(Boolean);
const adminToken = process.env.OIDC_TEST_ADMIN_TOKEN ?? '';

const DEFAULT_TTL_SECONDS = 300;

// Audiences by resource indicator. Keycloak puts `account` in `aud` when no audience mapper
// adds the API, which is what `urn:cove:account` imitates.
const RESOURCES = {
  'urn:cove:gateway': { audience: 'cove-gateway', alg: 'RS256' },
  'urn:cove:gateway:es256': { audience: 'cove-gateway', alg: 'ES256' },
  'urn:cove:account': { audience: 'account', alg: 'RS256' },
};

// One client per test user. `claims` are what Keycloak would put in that user's access token.
const USERS = {
  alice: {
    ttl: DEFAULT_TTL_SECONDS,
    claims: {
      sub: '6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d01',
      preferred_username: 'alice',
      email: 'alice@example.test',
      email_verified: true,
      azp: 'cove-cli',
      groups: ['/cove/payments/developers', '/cove/risk/admins', '/cove/risk/viewers', '/staff'],
      realm_access: { roles: ['default-roles-cove', 'offline_access'] },
    },
  },
  root: {
    ttl: DEFAULT_TTL_SECONDS,
    claims: {
      sub: '6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d02',
      preferred_username: 'root',
      email: 'root@example.test',
      email_verified: true,
      azp: 'cove-console',
      groups: [],
      realm_access: { roles: ['default-roles-cove', 'platform-admin'] },
    },
  },
  carol: {
    ttl: DEFAULT_TTL_SECONDS,
    claims: {
      sub: '6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d03',
      preferred_username: 'carol',
      email: 'carol@example.test',
      azp: 'cove-console',
      // A group mapper with "Full group path" off, or an older Keycloak, drops the slash.
      groups: ['cove/payments/viewers'],
      realm_access: { roles: ['default-roles-cove'] },
    },
  },
  nobody: {
    ttl: DEFAULT_TTL_SECONDS,
    claims: {
      sub: '6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d04',
      preferred_username: 'nobody',
      azp: 'cove-cli',
    },
  },
  // Keycloak signs ID tokens with the same keys; only `typ` tells them apart.
  idtoken: {
    ttl: DEFAULT_TTL_SECONDS,
    claims: {
      sub: '6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d06',
      preferred_username: 'idtoken',
      azp: 'cove-console',
      typ: 'ID',
      groups: ['/cove/payments/developers'],
    },
  },
  shortlived: {
    ttl: 2,
    claims: {
      sub: '6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d05',
      preferred_username: 'shortlived',
      azp: 'cove-cli',
      groups: ['/cove/payments/developers'],
      realm_access: { roles: [] },
    },
  },
};

// Public clients of real sign-ins. TTLs in seconds; the short ones exist to test expiry.
const PUBLIC_CLIENTS = {
  'cove-cli': { kind: 'device', accessTokenTTL: DEFAULT_TTL_SECONDS, deviceCodeTTL: 600 },
  'cove-cli-short': { kind: 'device', accessTokenTTL: 2, deviceCodeTTL: 600 },
  'cove-cli-expiring': { kind: 'device', accessTokenTTL: DEFAULT_TTL_SECONDS, deviceCodeTTL: 2 },
  'cove-console': { kind: 'code', accessTokenTTL: DEFAULT_TTL_SECONDS },
};
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
// Keycloak's `oauth2DevicePollingInterval` (5 s by default); short so tests run fast.
const DEVICE_POLL_INTERVAL_SECONDS = 1;
const CONSOLE_REDIRECT_URI = 'http://127.0.0.1:5173/auth/callback';

function publicClient(clientId, { kind }) {
  const device = kind === 'device';
  return {
    client_id: clientId,
    token_endpoint_auth_method: 'none',
    application_type: device ? 'native' : 'web',
    grant_types: device ? [DEVICE_GRANT, 'refresh_token'] : ['authorization_code', 'refresh_token'],
    redirect_uris: device ? [] : [CONSOLE_REDIRECT_URI],
    response_types: device ? [] : ['code'],
  };
}

// The user a token speaks for: the signed-in account, else the confidential client's user.
function userOf(token) {
  return USERS[token.accountId ?? token.clientId];
}

function secretFor(clientId) {
  return `${clientId}-secret`;
}

function newKey(kind, kid) {
  const { privateKey } = kind === 'EC'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

// Two things Keycloak does and oidc-provider does not: name the polling interval in the device
// authorization response, and answer `slow_down` to a poll that comes sooner than it.
const lastPolls = new Map();

async function pollLikeKeycloak(ctx, next) {
  await next();
  if (ctx.oidc?.route === 'device_authorization' && ctx.body?.device_code) {
    ctx.body = { ...ctx.body, interval: DEVICE_POLL_INTERVAL_SECONDS };
    return;
  }
  const code = ctx.oidc?.params?.device_code;
  if (ctx.oidc?.route !== 'token' || !code || ctx.body?.error !== 'authorization_pending') return;
  const now = Date.now();
  const last = lastPolls.get(code);
  lastPolls.set(code, now);
  if (last !== undefined && now - last < DEVICE_POLL_INTERVAL_SECONDS * 1000) {
    ctx.body = {
      error: 'slow_down',
      error_description: 'you are polling too quickly and should back off at a reasonable rate',
    };
  }
}

class Realm {
  constructor(name) {
    this.name = name;
    this.path = `/realms/${name}`;
    this.generation = 1;
    this.keys = [newKey('RSA', `${name}-rsa-1`), newKey('EC', `${name}-ec-1`)];
    this.stats = { jwks: 0, discovery: 0, token: 0 };
    this.cookieKeys = [crypto.randomBytes(32).toString('base64url')];
    this.build();
  }

  issuer(origin) {
    return `${origin}${this.path}`;
  }

  build() {
    this.provider = new Provider(this.issuer(origin), {
      clients: [
        ...Object.keys(USERS).map((clientId) => ({
          client_id: clientId,
          client_secret: secretFor(clientId),
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        })),
        ...Object.entries(PUBLIC_CLIENTS).map(([clientId, spec]) => publicClient(clientId, spec)),
      ],
      jwks: { keys: this.keys },
      cookies: { keys: this.cookieKeys },
      // Every login name is accepted on the development pages; its claims come from USERS.
      findAccount: async (_ctx, accountId) => ({
        accountId,
        claims: async () => ({ sub: USERS[accountId]?.claims.sub ?? accountId }),
      }),
      // Keycloak issues a refresh token with every user sign-in, `offline_access` or not.
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      ttl: {
        DeviceCode: (_ctx, _token, client) => PUBLIC_CLIENTS[client.clientId]?.deviceCodeTTL ?? 600,
      },
      features: {
        clientCredentials: { enabled: true },
        deviceFlow: { enabled: true },
        // oidc-provider's own sign-in and consent pages; a test drives them over HTTP.
        devInteractions: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => 'urn:cove:gateway',
          // Keycloak knows no resource parameter: a sign-in's tokens are always for the API.
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, resource, client) => {
            const server = RESOURCES[resource];
            if (!server) {
              throw new errors.InvalidTarget(`unknown resource ${resource}`);
            }
            return {
              scope: 'openid profile email',
              audience: server.audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL:
                PUBLIC_CLIENTS[client.clientId]?.accessTokenTTL
                ?? USERS[client.clientId]?.ttl
                ?? DEFAULT_TTL_SECONDS,
              jwt: { sign: { alg: server.alg } },
            };
          },
        },
      },
      extraTokenClaims: async (_ctx, token) => {
        const user = userOf(token);
        if (!user) return token.accountId ? { typ: 'Bearer', azp: token.clientId } : undefined;
        const { sub: _sub, ...claims } = user.claims;
        // A user's own sign-in names the client that asked, as Keycloak's `azp` does.
        return token.accountId
          ? { typ: 'Bearer', ...claims, azp: token.clientId }
          : { typ: 'Bearer', ...claims };
      },
      formats: {
        customizers: {
          // `sub` of a client_credentials token is the client id; Keycloak's is a user id.
          jwt: async (_ctx, token, jwt) => {
            const sub = userOf(token)?.claims.sub;
            if (sub) jwt.payload.sub = sub;
          },
        },
      },
    });
    this.provider.use(pollLikeKeycloak);
    this.handler = this.provider.callback();
  }

  rotate(retire) {
    this.generation += 1;
    const fresh = newKey('RSA', `${this.name}-rsa-${this.generation}`);
    // The first RS256 key in the keystore signs; older ones stay published unless retired.
    const kept = retire ? this.keys.filter((key) => key.kty !== 'RSA') : this.keys;
    this.keys = [fresh, ...kept];
    this.build();
    return fresh.kid;
  }

  serve(req, res) {
    const rest = req.url.slice(this.path.length) || '/';
    if (rest.startsWith('/jwks')) this.stats.jwks += 1;
    else if (rest.startsWith('/.well-known/openid-configuration')) this.stats.discovery += 1;
    else if (rest.startsWith('/token')) this.stats.token += 1;
    // Express-style mounting: oidc-provider derives its mount path from originalUrl minus url.
    req.originalUrl = req.url;
    req.url = rest;
    this.handler(req, res);
  }
}

let origin = `http://127.0.0.1:${port}`;
const realms = new Map();

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function serveAdmin(req, res, url) {
  if (!adminToken || req.headers['x-test-admin-token'] !== adminToken) {
    sendJson(res, 403, { error: 'forbidden' });
    return;
  }
  const match = url.pathname.match(/^\/__test\/realms\/([^/]+)\/(rotate|stats)$/);
  const realm = match && realms.get(match[1]);
  if (!realm) {
    sendJson(res, 404, { error: 'not_found' });
    return;
  }
  if (match[2] === 'rotate' && req.method === 'POST') {
    const kid = realm.rotate(url.searchParams.get('retire') === '1');
    sendJson(res, 200, { kid });
  } else if (match[2] === 'stats' && req.method === 'GET') {
    sendJson(res, 200, realm.stats);
  } else {
    sendJson(res, 405, { error: 'method_not_allowed' });
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, origin);
  if (url.pathname.startsWith('/__test/')) {
    serveAdmin(req, res, url);
    return;
  }
  const name = url.pathname.match(/^\/realms\/([^/]+)(\/|$)/)?.[1];
  const realm = name && realms.get(name);
  if (!realm) {
    sendJson(res, 404, { error: 'not_found' });
    return;
  }
  realm.serve(req, res);
});

server.listen(port, '127.0.0.1', () => {
  origin = `http://127.0.0.1:${server.address().port}`;
  for (const name of realmNames) realms.set(name, new Realm(name));
  const issuers = [...realms.values()].map((realm) => realm.issuer(origin));
  console.log(`oidc-provider ready on ${origin} issuers ${issuers.join(' ')}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
