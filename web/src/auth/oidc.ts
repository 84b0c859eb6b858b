// OpenID Connect sign-in (Authorization Code + PKCE) with oidc-client-ts. The access token is
// sent to the platform API as a bearer token, like an API key.
import { UserManager, WebStorageStateStore, type User } from 'oidc-client-ts';
import type { OidcSettings } from './config';

let manager: UserManager | null = null;
let managerKey = '';

export function userManager(settings: OidcSettings): UserManager {
  const key = `${settings.issuer}|${settings.client_id}`;
  if (manager === null || managerKey !== key) {
    const origin = window.location.origin;
    manager = new UserManager({
      authority: settings.issuer,
      client_id: settings.client_id,
      redirect_uri: `${origin}/auth/callback`,
      post_logout_redirect_uri: `${origin}/login`,
      response_type: 'code',
      scope: settings.scope ?? 'openid profile email',
      userStore: new WebStorageStateStore({ store: window.sessionStorage }),
      automaticSilentRenew: false,
    });
    managerKey = key;
  }
  return manager;
}

export async function startOidcSignIn(settings: OidcSettings, returnTo: string): Promise<void> {
  await userManager(settings).signinRedirect({ state: { returnTo } });
}

export async function completeOidcSignIn(
  settings: OidcSettings,
): Promise<{ user: User; returnTo: string }> {
  const user = await userManager(settings).signinRedirectCallback();
  const state = user.state as { returnTo?: unknown } | undefined;
  const returnTo =
    typeof state?.returnTo === 'string' && state.returnTo.startsWith('/') ? state.returnTo : '/';
  return { user, returnTo };
}

export async function currentOidcUser(settings: OidcSettings): Promise<User | null> {
  const user = await userManager(settings).getUser();
  return user && !user.expired ? user : null;
}

export async function oidcSignOut(settings: OidcSettings): Promise<void> {
  await userManager(settings).removeUser();
}
