// A certified OpenID Provider (`oidc-provider`) dressed as Keycloak, for Cove's tests.
//
// No Keycloak server can run where Cove's suite runs, so the token verifier is tested against
// this instead: one provider per realm, each mounted at `/realms/<realm>` so issuers, discovery
// and JWKS URLs have Keycloak's shape, issuing JWT access tokens through `client_credentials`
// whose claims look like Keycloak's (`groups`, `realm_access.roles`, `preferred_username`,
// `azp`, `typ: Bearer`). Every test client stands for one user.
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

function secretFor(clientId) {
  return `${clientId}-secret`;
}

function newKey(kind, kid) {
  const { privateKey } = kind === 'EC'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
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
      clients: Object.keys(USERS).map((clientId) => ({
        client_id: clientId,
        client_secret: secretFor(clientId),
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      })),
      jwks: { keys: this.keys },
      cookies: { keys: this.cookieKeys },
      features: {
        clientCredentials: { enabled: true },
        devInteractions: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => 'urn:cove:gateway',
          getResourceServerInfo: async (_ctx, resource, client) => {
            const server = RESOURCES[resource];
            if (!server) {
              throw new errors.InvalidTarget(`unknown resource ${resource}`);
            }
            return {
              scope: 'openid profile email',
              audience: server.audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL: USERS[client.clientId]?.ttl ?? DEFAULT_TTL_SECONDS,
              jwt: { sign: { alg: server.alg } },
            };
          },
        },
      },
      extraTokenClaims: async (_ctx, token) => {
        const user = USERS[token.clientId];
        if (!user) return undefined;
        const { sub: _sub, ...claims } = user.claims;
        return { typ: 'Bearer', ...claims };
      },
      formats: {
        customizers: {
          // `sub` of a client_credentials token is the client id; Keycloak's is a user id.
          jwt: async (_ctx, token, jwt) => {
            const sub = USERS[token.clientId]?.claims.sub;
            if (sub) jwt.payload.sub = sub;
          },
        },
      },
    });
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
