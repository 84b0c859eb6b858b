// The overview's filters live in the URL, so a dashboard can be bookmarked and shared.
import { useSearchParams } from 'react-router-dom';
import { daysAgo, isIsoDay } from '../../lib/dates';
import { DIMENSIONS, FILTER_FIELDS, type Dimension, type MetricsQuery } from './metrics';

export interface OverviewFilters {
  from: string;
  to: string;
  by: Exclude<Dimension, 'day'>;
  filters: MetricsQuery['filters'];
}

export const DEFAULT_DAYS = 7;

export function readFilters(params: URLSearchParams, now: Date = new Date()): OverviewFilters {
  const to = params.get('to');
  const from = params.get('from');
  const by = params.get('by');
  const filters: MetricsQuery['filters'] = {};
  for (const field of FILTER_FIELDS) {
    const value = params.get(field);
    if (value) filters[field] = value;
  }
  const validBy = DIMENSIONS.some((d) => d.value === by && d.value !== 'day');
  return {
    from: from && isIsoDay(from) ? from : daysAgo(DEFAULT_DAYS - 1, now),
    to: to && isIsoDay(to) ? to : daysAgo(0, now),
    by: validBy ? (by as OverviewFilters['by']) : 'model_version',
    filters,
  };
}

export function writeFilters(params: URLSearchParams, filters: OverviewFilters): URLSearchParams {
  const next = new URLSearchParams(params);
  next.set('from', filters.from);
  next.set('to', filters.to);
  next.set('by', filters.by);
  for (const field of FILTER_FIELDS) {
    const value = filters.filters[field];
    if (value) next.set(field, value);
    else next.delete(field);
  }
  return next;
}

export function validateRange(from: string, to: string): string | null {
  if (!isIsoDay(from)) return 'The start date must be a date (YYYY-MM-DD).';
  if (!isIsoDay(to)) return 'The end date must be a date (YYYY-MM-DD).';
  if (from > to) return 'The start date must not be after the end date.';
  return null;
}

export function useOverviewFilters(): [OverviewFilters, (next: OverviewFilters) => void] {
  const [params, setParams] = useSearchParams();
  return [readFilters(params), (next) => setParams((prev) => writeFilters(prev, next))];
}
