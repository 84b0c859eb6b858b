import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter, Route, Routes, useLocation } from 'react-router-dom';
import { makeQueryClient, Providers } from '../Providers';

export function signedIn(token = 'cove_testkey_secret') {
  sessionStorage.setItem(
    'cove.console.session',
    JSON.stringify({ method: 'dev', token, label: 'API key testkey' }),
  );
}

export function LocationProbe() {
  const location = useLocation();
  return <output data-testid="location">{location.pathname + location.search}</output>;
}

/** Renders a page at a URL inside the console's providers, with a fresh query cache. */
export function renderAt(url: string, path: string, element: ReactElement) {
  const client = makeQueryClient();
  client.setDefaultOptions({ queries: { retry: false, staleTime: 0 } });
  return render(
    <MemoryRouter initialEntries={[url]}>
      <Providers queryClient={client}>
        <Routes>
          <Route path={path} element={element} />
          <Route path="/login" element={<p>login page</p>} />
        </Routes>
        <LocationProbe />
      </Providers>
    </MemoryRouter>,
  );
}
