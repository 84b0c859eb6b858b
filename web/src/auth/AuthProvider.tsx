import { useQueryClient } from '@tanstack/react-query';
import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
  type ReactNode,
} from 'react';
import { call, configureAuth, api } from '../api/client';
import { ApiError } from '../api/errors';
import { DEV_ONLY, loadConsoleConfig, type ConsoleConfig } from './config';
import { currentOidcUser, oidcSignOut } from './oidc';

export type SignInMethod = 'dev' | 'oidc';

export interface Session {
  method: SignInMethod;
  token: string;
  /** Who signed in, as far as the console knows (the OIDC username, or "API key"). */
  label: string;
}

interface AuthState {
  ready: boolean;
  config: ConsoleConfig;
  configError: ApiError | null;
  session: Session | null;
  /** Why the last session ended, shown on the sign-in page. */
  endedBecause: string | null;
  signInWithKey: (key: string) => Promise<void>;
  adoptOidcToken: (token: string, label: string) => void;
  signOut: (reason?: string) => void;
}

const AuthContext = createContext<AuthState | null>(null);
const STORAGE_KEY = 'cove.console.session';

let currentToken: string | null = null;

function readStored(): Session | null {
  try {
    const raw = window.sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const value = JSON.parse(raw) as Partial<Session>;
    if ((value.method === 'dev' || value.method === 'oidc') && typeof value.token === 'string') {
      return { method: value.method, token: value.token, label: value.label ?? 'API key' };
    }
  } catch {
    // A corrupt entry is treated as no session.
  }
  return null;
}

export function keyLabel(key: string): string {
  // cove_<key id>_<secret>: the key id identifies the key without revealing it.
  const parts = key.split('_');
  return parts.length >= 3 && parts[0] === 'cove' ? `API key ${parts[1]}` : 'API key';
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [session, setSession] = useState<Session | null>(() => readStored());
  const [config, setConfig] = useState<ConsoleConfig>(DEV_ONLY);
  const [configError, setConfigError] = useState<ApiError | null>(null);
  const [ready, setReady] = useState(false);
  const [endedBecause, setEndedBecause] = useState<string | null>(null);

  currentToken = session?.token ?? null;

  const store = useCallback((next: Session | null) => {
    currentToken = next?.token ?? null;
    if (next) window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next));
    else window.sessionStorage.removeItem(STORAGE_KEY);
    setSession(next);
  }, []);

  const signOut = useCallback(
    (reason?: string) => {
      const ending = readStored();
      store(null);
      queryClient.clear();
      setEndedBecause(reason ?? null);
      if (ending?.method === 'oidc' && config.oidc) void oidcSignOut(config.oidc);
    },
    [config.oidc, queryClient, store],
  );

  useEffect(() => {
    configureAuth(
      () => currentToken,
      (error) => {
        if (currentToken !== null) signOut(`Signed out: ${error.message}`);
      },
    );
  }, [signOut]);

  useEffect(() => {
    let cancelled = false;
    (async () => {
      try {
        const loaded = await loadConsoleConfig();
        if (cancelled) return;
        setConfig(loaded);
        const stored = readStored();
        if (stored?.method === 'oidc' && loaded.oidc) {
          const user = await currentOidcUser(loaded.oidc);
          if (!cancelled && user === null) store(null);
        }
      } catch (error) {
        if (!cancelled) setConfigError(error instanceof ApiError ? error : null);
      } finally {
        if (!cancelled) setReady(true);
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [store]);

  const signInWithKey = useCallback(
    async (key: string) => {
      const token = key.trim();
      if (!token) throw new Error('Paste an admin API key.');
      // The key is checked against the API before it is kept.
      const previous = currentToken;
      currentToken = token;
      try {
        await call(api.GET('/api/v1/bus'), '/api/v1/bus');
      } catch (error) {
        currentToken = previous;
        if (error instanceof ApiError && error.code === 'insufficient_scope') {
          throw new Error('This key lacks the admin:read scope; use an admin key.');
        }
        throw error;
      }
      queryClient.clear();
      setEndedBecause(null);
      store({ method: 'dev', token, label: keyLabel(token) });
    },
    [queryClient, store],
  );

  const adoptOidcToken = useCallback(
    (token: string, label: string) => {
      queryClient.clear();
      setEndedBecause(null);
      store({ method: 'oidc', token, label });
    },
    [queryClient, store],
  );

  const value = useMemo<AuthState>(
    () => ({
      ready,
      config,
      configError,
      session,
      endedBecause,
      signInWithKey,
      adoptOidcToken,
      signOut,
    }),
    [ready, config, configError, session, endedBecause, signInWithKey, adoptOidcToken, signOut],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const value = useContext(AuthContext);
  if (value === null) throw new Error('useAuth outside <AuthProvider>');
  return value;
}
