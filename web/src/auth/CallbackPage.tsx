import { Center } from '@mantine/core';
import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { ErrorState, LoadingState } from '../components/states';
import { useAuth } from './AuthProvider';
import { completeOidcSignIn } from './oidc';

/** Where the identity provider sends the browser back with the authorization code. */
export function CallbackPage() {
  const { ready, config, adoptOidcToken } = useAuth();
  const navigate = useNavigate();
  const [error, setError] = useState<unknown>(null);
  const done = useRef(false);

  useEffect(() => {
    if (!ready || done.current) return;
    done.current = true;
    if (!config.oidc) {
      setError(new Error('Single sign-on is not configured on this platform.'));
      return;
    }
    completeOidcSignIn(config.oidc)
      .then(({ user, returnTo }) => {
        const profile = user.profile as { preferred_username?: string; email?: string };
        adoptOidcToken(user.access_token, profile.preferred_username ?? profile.email ?? user.profile.sub);
        navigate(returnTo === '/' ? '/overview' : returnTo, { replace: true });
      })
      .catch((err: unknown) => setError(err));
  }, [ready, config.oidc, adoptOidcToken, navigate]);

  return (
    <Center mih="100vh" p="md">
      {error ? (
        <div>
          <ErrorState error={error} title="Single sign-on failed" />
          <Link to="/login">Back to sign-in</Link>
        </div>
      ) : (
        <LoadingState label="Completing sign-in…" />
      )}
    </Center>
  );
}
