// A fake platform API at the HTTP boundary: tests stub global fetch with handlers keyed by
// "METHOD /path" and assert on what the console rendered and on the requests it sent.
import { vi } from 'vitest';

export interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  body: unknown;
}

type Handler = (request: Seen) => Response | Promise<Response>;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'x-request-id': 'req-test', ...headers },
  });
}

export function apiError(status: number, code: string, message: string, details?: unknown): Response {
  return json({ error: { code, message, ...(details ? { details } : {}) } }, status);
}

export const notFoundRoute = () => apiError(404, 'route_not_found', 'Not Found');

export function installFakeApi(handlers: Record<string, Handler>) {
  const seen: Seen[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(new URL(String(input), 'http://localhost'), init);
    const url = new URL(request.url, 'http://localhost');
    const text = request.method === 'GET' || request.method === 'HEAD' ? '' : await request.text();
    const entry: Seen = {
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      headers: request.headers,
      body: text ? JSON.parse(text) : undefined,
    };
    seen.push(entry);
    const handler = handlers[`${entry.method} ${entry.path}`];
    if (!handler) return notFoundRoute();
    return handler(entry);
  });
  vi.stubGlobal('fetch', fetchMock);
  return { seen, fetchMock };
}

export const BU = {
  id: '11111111-1111-4111-8111-111111111111',
  slug: 'demo',
  name: 'Demo',
  status: 'active',
  gpu_quota: 0,
  max_model_instances: 2,
  tokens_per_day: null,
  prompt_logging: 'off',
  retention_days: 90,
  created_at: '2025-01-01T00:00:00Z',
  updated_at: '2025-01-01T00:00:00Z',
} as const;
