import { Alert, Button, Card, Center, Code, Divider, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { Navigate, useLocation, useNavigate } from 'react-router-dom';
import { describeError, ErrorState, LoadingState } from '../components/states';
import { useAuth } from './AuthProvider';
import { startOidcSignIn } from './oidc';

/** `#key=<admin key>` in the URL signs in at once (the local stack prints such a link). */
export function keyFromFragment(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const key = params.get('key');
  return key && key.trim() ? key.trim() : null;
}

function safeReturn(value: unknown): string {
  return typeof value === 'string' && value.startsWith('/') && !value.startsWith('/login')
    ? value
    : '/overview';
}

export function LoginPage() {
  const { ready, config, configError, session, endedBecause, signInWithKey } = useAuth();
  const location = useLocation();
  const navigate = useNavigate();
  const returnTo = safeReturn((location.state as { from?: string } | null)?.from);
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const autoTried = useRef(false);

  useEffect(() => {
    document.title = 'Sign in · Cove';
  }, []);

  const submit = async (candidate: string) => {
    setBusy(true);
    setError(null);
    try {
      await signInWithKey(candidate);
      navigate(returnTo, { replace: true });
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    if (!ready || autoTried.current) return;
    autoTried.current = true;
    const fromFragment = keyFromFragment(window.location.hash);
    if (fromFragment) {
      // Take the key out of the address bar and history before using it.
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
      void submit(fromFragment);
    }
  }, [ready]);

  if (session) return <Navigate to={returnTo} replace />;
  if (!ready) return <LoadingState label="Loading sign-in options…" />;

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    void submit(key);
  };

  return (
    <Center mih="100vh" p="md">
      <Card withBorder shadow="sm" padding="xl" w={460} component="main">
        <Stack gap="md">
          <Title order={1} size="h2">
            Sign in to Cove
          </Title>
          {endedBecause ? (
            <Alert color="blue" variant="light" role="status">
              {endedBecause}
            </Alert>
          ) : null}
          {configError ? (
            <ErrorState error={configError} title="Could not load the sign-in options" />
          ) : null}
          {config.oidc ? (
            <Button
              onClick={() => {
                startOidcSignIn(config.oidc!, returnTo).catch((err: unknown) =>
                  setError(describeError(err)),
                );
              }}
            >
              Sign in with single sign-on
            </Button>
          ) : null}
          {config.oidc && config.dev_login ? <Divider label="or" labelPosition="center" /> : null}
          {config.dev_login ? (
            <form onSubmit={onSubmit} aria-label="Dev login">
              <Stack gap="sm">
                <PasswordInput
                  label="Admin API key"
                  description={
                    <>
                      Dev login for the local stack: paste the key from{' '}
                      <Code>.cove/admin-api-key</Code>.
                    </>
                  }
                  placeholder="cove_…"
                  value={key}
                  onChange={(event) => setKey(event.currentTarget.value)}
                  autoComplete="off"
                  required
                  data-autofocus
                  autoFocus
                />
                <Button type="submit" loading={busy}>
                  Sign in
                </Button>
              </Stack>
            </form>
          ) : null}
          {error ? (
            <Alert color="red" role="alert" title="Sign-in failed" variant="light">
              {error}
            </Alert>
          ) : null}
          <Text size="xs" c="dimmed">
            The console calls the platform API with your credential; it never stores it beyond
            this browser tab.
          </Text>
        </Stack>
      </Card>
    </Center>
  );
}
