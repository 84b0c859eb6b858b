// The prompt-log API: GET /api/v1/bus/{bu_id}/prompt-logs (BU admins of that BU and platform
// admins), newest first, paged by an opaque `cursor` (the previous page's `next_cursor`).
// Every read is recorded in the audit log as `prompt_logs.read`.
import { api, call, type Schemas } from '../../api/client';
import { isIsoDay } from '../../lib/dates';

export type PromptLog = Schemas['PromptLog'];
export type PromptLogPage = Schemas['PromptLogPage'];

export const promptLogsPath = (buId: string) => `/api/v1/bus/${buId}/prompt-logs`;
export const PROMPT_LOGS_PATH = '/api/v1/bus/{bu_id}/prompt-logs';

/** Entries asked for per page (the API allows 1–500; full entries carry code, so keep it modest). */
export const PAGE_SIZE = 50;

/** The filters as they stand in the URL: `user`, and `since` / `until` as a UTC day or minute. */
export interface PromptLogFilters {
  user?: string;
  /** YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC, inclusive */
  since?: string;
  until?: string;
}

export const FILTER_FIELDS = ['user', 'since', 'until'] as const;

const MOMENT = /^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/;

/** A UTC day (YYYY-MM-DD) or a UTC minute / second (YYYY-MM-DDTHH:MM[:SS]), as typed in the form. */
export function isFilterTime(value: string): boolean {
  if (isIsoDay(value)) return true;
  const m = MOMENT.exec(value);
  if (!m) return false;
  const [, day, hh, mm, ss] = m;
  return isIsoDay(day!) && Number(hh) < 24 && Number(mm) < 60 && (ss === undefined || Number(ss) < 60);
}

/**
 * The ISO 8601 instant the API gets for a filter time. Both ends are inclusive: a day or minute
 * given as `until` reaches its last millisecond.
 */
export function apiTime(value: string, edge: 'since' | 'until'): string {
  if (isIsoDay(value)) return edge === 'since' ? `${value}T00:00:00Z` : `${value}T23:59:59.999Z`;
  const m = MOMENT.exec(value)!;
  const [, day, hh, mm, ss] = m;
  if (ss !== undefined) return `${day}T${hh}:${mm}:${ss}${edge === 'since' ? '' : '.999'}Z`;
  return `${day}T${hh}:${mm}:${edge === 'since' ? '00' : '59.999'}Z`;
}

export function readFilters(params: URLSearchParams): PromptLogFilters {
  const filters: PromptLogFilters = {};
  const user = params.get('user')?.trim();
  if (user) filters.user = user;
  for (const edge of ['since', 'until'] as const) {
    const value = params.get(edge);
    if (value && isFilterTime(value)) filters[edge] = value;
  }
  return filters;
}

export function writeFilters(params: URLSearchParams, filters: PromptLogFilters): URLSearchParams {
  const next = new URLSearchParams(params);
  for (const field of FILTER_FIELDS) {
    const value = filters[field]?.trim();
    if (value) next.set(field, value);
    else next.delete(field);
  }
  return next;
}

export function hasFilters(filters: PromptLogFilters): boolean {
  return FILTER_FIELDS.some((f) => Boolean(filters[f]));
}

/** The value a `datetime-local` input shows for a filter time (a bare day: its first / last minute). */
export function inputTime(value: string | undefined, edge: 'since' | 'until'): string {
  if (!value) return '';
  if (isIsoDay(value)) return `${value}T${edge === 'since' ? '00:00' : '23:59'}`;
  return value;
}

/** What is wrong with the filters typed in the form, or null. */
export function validateFilters(filters: PromptLogFilters): string | null {
  for (const edge of ['since', 'until'] as const) {
    const value = filters[edge];
    if (value && !isFilterTime(value)) {
      return `${edge === 'since' ? 'Since' : 'Until'} must be a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM), in UTC.`;
    }
  }
  if (
    filters.since &&
    filters.until &&
    Date.parse(apiTime(filters.since, 'since')) > Date.parse(apiTime(filters.until, 'until'))
  ) {
    return 'Since must not be after until.';
  }
  if (filters.user && filters.user.trim().length > 200) return 'The user must be at most 200 characters.';
  return null;
}

export function promptLogQuery(filters: PromptLogFilters, cursor?: string) {
  return {
    ...(filters.user ? { user: filters.user } : {}),
    ...(filters.since ? { since: apiTime(filters.since, 'since') } : {}),
    ...(filters.until ? { until: apiTime(filters.until, 'until') } : {}),
    ...(cursor ? { cursor } : {}),
    limit: PAGE_SIZE,
  };
}

export function fetchPromptLogPage(
  buId: string,
  filters: PromptLogFilters,
  cursor?: string,
): Promise<PromptLogPage> {
  return call(
    api.GET('/api/v1/bus/{bu_id}/prompt-logs', {
      params: { path: { bu_id: buId }, query: promptLogQuery(filters, cursor) },
    }),
    promptLogsPath(buId),
  );
}

export interface FiredRule {
  action: string;
  type: string;
  rule: string;
}

function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A rule that fired, as the API records it ({action, type, rule}); missing parts are empty. */
export function firedRule(raw: Record<string, unknown>): FiredRule {
  return { action: text(raw.action), type: text(raw.type), rule: text(raw.rule) };
}

export function ruleLabel(rule: FiredRule): string {
  return [rule.action, rule.type, rule.rule].filter(Boolean).join(' · ') || 'rule';
}

export const ACTION_COLOR: Record<string, string> = {
  redact: 'yellow',
  audit: 'blue',
  drop: 'red',
  block: 'red',
};

/** Whether the entry kept text: only `full` entries have prompt / suffix / completion. */
export function keepsText(entry: PromptLog): boolean {
  return entry.mode === 'full';
}

/** A chat prompt is the JSON of the redacted messages: shown indented when it parses. */
export function displayPrompt(entry: PromptLog): string | null {
  if (entry.prompt === null || entry.feature !== 'chat') return entry.prompt;
  try {
    return JSON.stringify(JSON.parse(entry.prompt), null, 2);
  } catch {
    return entry.prompt;
  }
}
