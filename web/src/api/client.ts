// The console's only way to the platform API: the client generated from its OpenAPI document
// (./generated), with the signed-in credential attached and errors turned into ApiError.
import createClient, { type Middleware } from 'openapi-fetch';
import { ApiError, errorFromResponse, networkError } from './errors';
import type { components, paths } from './generated/schema';

export type Schemas = components['schemas'];
export type BusinessUnit = Schemas['BusinessUnit'];
export type ApiKey = Schemas['ApiKey'];
export type ApiKeyCreated = Schemas['ApiKeyCreated'];
export type Deployment = Schemas['Deployment'];
export type PolicyView = Schemas['PolicyView'];
export type DryRunResult = Schemas['DryRunResult'];
export type Scope = Schemas['Scope'];

type TokenSource = () => string | null;
type UnauthorizedHandler = (error: ApiError) => void;

let tokenSource: TokenSource = () => null;
let onUnauthorized: UnauthorizedHandler = () => {};

/** Called by the auth provider: where the bearer token comes from, what a 401 does. */
export function configureAuth(source: TokenSource, unauthorized: UnauthorizedHandler): void {
  tokenSource = source;
  onUnauthorized = unauthorized;
}

const authMiddleware: Middleware = {
  onRequest({ request }) {
    const token = tokenSource();
    if (token) request.headers.set('Authorization', `Bearer ${token}`);
    return request;
  },
};

// fetch is looked up per call (not captured once), so tests can stub it at the HTTP boundary.
export const api = createClient<paths>({
  baseUrl: typeof window === 'undefined' ? '' : window.location.origin,
  fetch: (request: Request) => globalThis.fetch(request),
});
api.use(authMiddleware);

function pathOf(response: Response | undefined, fallback: string): string {
  try {
    return response ? new URL(response.url, window.location.origin).pathname : fallback;
  } catch {
    return fallback;
  }
}

/**
 * The data of an openapi-fetch result, or an ApiError thrown. Use as
 * `unwrap(await api.GET('/api/v1/bus'))`, or with a promise: `await call(api.GET(...))`.
 */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  const { data, error, response } = result;
  if (!response.ok || error !== undefined) {
    const err = errorFromResponse(response, error, pathOf(response, ''));
    if (err.isUnauthorized) onUnauthorized(err);
    throw err;
  }
  return data as T;
}

export async function call<T>(
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
  path = '',
): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await pending;
  } catch (cause) {
    throw networkError(path, cause);
  }
  return unwrap(result);
}

/**
 * A GET on an endpoint that is not in the generated schema yet (an API being built by
 * another team: analytics, audit). Typed by the feature's contract; replaced by the
 * generated client as soon as the endpoint lands in the OpenAPI document.
 */
export async function getUntyped<T>(
  path: string,
  query: Record<string, string | undefined> = {},
  accept = 'application/json',
): Promise<T> {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') params.set(name, value);
  }
  const url = params.size > 0 ? `${path}?${params.toString()}` : path;
  const headers: Record<string, string> = { Accept: accept };
  const token = tokenSource();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(url, { headers });
  } catch (cause) {
    throw networkError(path, cause);
  }
  if (!response.ok) {
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const err = errorFromResponse(response, body, path);
    if (err.isUnauthorized) onUnauthorized(err);
    throw err;
  }
  if (accept === 'application/json') return (await response.json()) as T;
  return (await response.text()) as T;
}

/** Fetches a file the API renders (CSV exports) with the credential, and saves it. */
export async function downloadFile(
  path: string,
  query: Record<string, string | undefined>,
  filename: string,
): Promise<void> {
  const text = await getUntyped<string>(path, query, 'text/csv');
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}
