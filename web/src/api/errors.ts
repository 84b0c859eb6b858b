// Errors of the platform API as the console shows them. The API renders
// {"error": {"code", "message", "details"}}; validation failures carry details.errors[].

export interface FieldError {
  loc: string[];
  msg: string;
  type: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fieldErrors: FieldError[];
  readonly requestId: string | null;
  readonly path: string;
  /** The request field a 4xx is about, when the API names one (`repositories[1].location`). */
  readonly param: string | null;

  constructor(options: {
    status: number;
    code: string;
    message: string;
    fieldErrors?: FieldError[];
    requestId?: string | null;
    path: string;
    param?: string | null;
  }) {
    super(options.message);
    this.name = 'ApiError';
    this.status = options.status;
    this.code = options.code;
    this.fieldErrors = options.fieldErrors ?? [];
    this.requestId = options.requestId ?? null;
    this.path = options.path;
    this.param = options.param ?? null;
  }

  /** The route does not exist on this platform (an API that has not landed yet). */
  get isMissingRoute(): boolean {
    return this.status === 404 && this.code === 'route_not_found';
  }

  get isUnauthorized(): boolean {
    return this.status === 401;
  }
}

function asFieldErrors(value: unknown): FieldError[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
    .map((e) => ({
      loc: Array.isArray(e.loc) ? e.loc.map(String) : [],
      msg: typeof e.msg === 'string' ? e.msg : String(e.msg ?? ''),
      type: typeof e.type === 'string' ? e.type : '',
    }));
}

/** Builds an ApiError from a non-2xx response and its (already parsed, maybe absent) body. */
export function errorFromResponse(response: Response, body: unknown, path: string): ApiError {
  const requestId = response.headers.get('x-request-id');
  const envelope =
    typeof body === 'object' && body !== null && 'error' in body
      ? (body as { error: unknown }).error
      : null;
  if (typeof envelope === 'object' && envelope !== null) {
    const e = envelope as Record<string, unknown>;
    const details = (e.details ?? {}) as Record<string, unknown>;
    return new ApiError({
      status: response.status,
      code: typeof e.code === 'string' ? e.code : 'http_error',
      message: typeof e.message === 'string' ? e.message : response.statusText,
      fieldErrors: asFieldErrors(details.errors),
      requestId,
      path,
      param: typeof e.param === 'string' ? e.param : null,
    });
  }
  // FastAPI's own shape ({"detail": [...]}) in case a route bypasses the error handler.
  const detail =
    typeof body === 'object' && body !== null && 'detail' in body
      ? (body as { detail: unknown }).detail
      : null;
  const fieldErrors = asFieldErrors(detail);
  return new ApiError({
    status: response.status,
    code: response.status === 404 ? 'not_found' : 'http_error',
    message:
      typeof detail === 'string'
        ? detail
        : fieldErrors[0]?.msg ?? `The platform API answered ${response.status} ${response.statusText}`,
    fieldErrors,
    requestId,
    path,
  });
}

export function networkError(path: string, cause: unknown): ApiError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new ApiError({
    status: 0,
    code: 'network_error',
    message: `The platform API cannot be reached (${reason}).`,
    path,
  });
}

/** "document.limits.max_tokens" from a validation error's location. */
export function fieldPath(error: FieldError): string {
  return error.loc.filter((part) => part !== 'body').join('.') || 'request';
}
