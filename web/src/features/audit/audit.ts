// The audit log API: GET /api/v1/audit (everything, platform admins) or
// GET /api/v1/bus/{bu_id}/audit (one BU), newest first, paged by `before_id`;
// GET /api/v1/bus/{bu_id}/audit.csv exports a BU's log.
import { api, call, type Schemas } from '../../api/client';

export type AuditEntry = Schemas['AuditEntry'];
export type AuditPage = Schemas['AuditPage'];
export const AUDIT_PATH = '/api/v1/audit';

export interface AuditFilters {
  actor?: string;
  action?: string;
  /** YYYY-MM-DD, inclusive, UTC */
  from?: string;
  to?: string;
}

export const PAGE_SIZE = 100;

export function auditQuery(filters: AuditFilters, beforeId?: number) {
  return {
    ...(filters.actor ? { actor: filters.actor } : {}),
    ...(filters.action ? { action: filters.action } : {}),
    ...(filters.from ? { since: `${filters.from}T00:00:00Z` } : {}),
    ...(filters.to ? { until: `${filters.to}T23:59:59.999Z` } : {}),
    ...(beforeId ? { before_id: beforeId } : {}),
    limit: PAGE_SIZE,
  };
}

export async function fetchAuditPage(
  buId: string | null,
  filters: AuditFilters,
  beforeId?: number,
): Promise<AuditPage> {
  const query = auditQuery(filters, beforeId);
  if (buId) {
    return call(
      api.GET('/api/v1/bus/{bu_id}/audit', { params: { path: { bu_id: buId }, query } }),
      `/api/v1/bus/${buId}/audit`,
    );
  }
  return call(api.GET('/api/v1/audit', { params: { query } }), AUDIT_PATH);
}

function csvCell(value: unknown): string {
  const text =
    value === null || value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);
  // A leading = + - @ would run as a formula in a spreadsheet.
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\n\r]/.test(safe) || safe !== text ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** CSV of the loaded entries (the organisation-wide log has no server export). */
export function auditCsv(entries: AuditEntry[]): string {
  const header = ['created_at', 'actor', 'action', 'target', 'tenant_id', 'request_id', 'diff'];
  const lines = entries.map((e) =>
    [e.created_at, e.actor, e.action, e.target, e.tenant_id, e.request_id, e.diff].map(csvCell).join(','),
  );
  return [header.join(','), ...lines].join('\r\n') + '\r\n';
}

export function display(value: unknown): string {
  if (value === undefined) return '(absent)';
  if (value === null) return 'null';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The audit diff as [field, before, after] rows; a malformed change shows as "after" only. */
export function diffRows(diff: AuditEntry['diff']): [string, unknown, unknown][] {
  return Object.entries(diff ?? {}).map(([field, change]) =>
    Array.isArray(change) && change.length === 2 ? [field, change[0], change[1]] : [field, undefined, change],
  );
}
