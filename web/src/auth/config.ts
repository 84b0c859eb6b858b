// How the console signs in, as the platform says: GET /api/v1/console-config (public).
// Contract the console expects (see web/README.md):
//   {"oidc": {"issuer": "https://sso.example.com/realms/cove", "client_id": "cove-console",
//             "scope": "openid profile email"} | null,
//    "dev_login": true}
// A platform without the endpoint (404) gets the dev login only.
import { getUntyped } from '../api/client';
import { ApiError } from '../api/errors';

export interface OidcSettings {
  issuer: string;
  client_id: string;
  scope?: string;
}

export interface ConsoleConfig {
  oidc: OidcSettings | null;
  dev_login: boolean;
}

export const DEV_ONLY: ConsoleConfig = { oidc: null, dev_login: true };

export function parseConsoleConfig(raw: unknown): ConsoleConfig {
  if (typeof raw !== 'object' || raw === null) return DEV_ONLY;
  const value = raw as Record<string, unknown>;
  const oidc = value.oidc as Record<string, unknown> | null | undefined;
  const valid =
    oidc &&
    typeof oidc.issuer === 'string' &&
    oidc.issuer.length > 0 &&
    typeof oidc.client_id === 'string' &&
    oidc.client_id.length > 0;
  return {
    oidc: valid
      ? {
          issuer: oidc.issuer as string,
          client_id: oidc.client_id as string,
          ...(typeof oidc.scope === 'string' ? { scope: oidc.scope } : {}),
        }
      : null,
    // Without OIDC the dev login is the only way in, whatever the flag says.
    dev_login: !valid || value.dev_login !== false,
  };
}

export async function loadConsoleConfig(): Promise<ConsoleConfig> {
  try {
    return parseConsoleConfig(await getUntyped<unknown>('/api/v1/console-config'));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return DEV_ONLY;
    throw error;
  }
}
