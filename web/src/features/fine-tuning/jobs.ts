// Reading a fine-tuning job as the console shows it. The API types `evaluation`, `reason` and
// `spec` as open objects (they carry the pipeline's report as it is); these functions pick out
// what the page shows and never invent a number that is not there.
import type { Schemas } from '../../api/client';

export type Job = Schemas['Job'];
export type JobStatus = Job['status'];

export const ACTIVE: ReadonlySet<JobStatus> = new Set(['queued', 'preparing', 'training', 'evaluating']);

export const STATUS_COLOR: Record<JobStatus, string> = {
  queued: 'gray',
  preparing: 'blue',
  training: 'blue',
  evaluating: 'cyan',
  succeeded: 'green',
  failed: 'red',
  cancelled: 'orange',
};

export function isActive(job: Job): boolean {
  return ACTIVE.has(job.status);
}

export function canCancel(job: Job): boolean {
  return isActive(job) && !job.cancel_requested;
}

export function canRetry(job: Job): boolean {
  return job.status === 'failed' || job.status === 'cancelled';
}

export interface Reason {
  code: string;
  message: string;
}

export function readReason(job: Job): Reason | null {
  const reason = job.reason;
  if (!reason) return null;
  return {
    code: typeof reason.code === 'string' ? reason.code : 'unknown',
    message: typeof reason.message === 'string' ? reason.message : '',
  };
}

/** The four scores of the issue, in the order the page lists them. */
export const METRICS = [
  { key: 'exact_match', label: 'Exact match' },
  { key: 'edit_similarity', label: 'Edit similarity' },
  { key: 'sdk_api_recall', label: 'SDK-API recall' },
  { key: 'syntax_validity', label: 'Syntax validity' },
] as const;

export type MetricKey = (typeof METRICS)[number]['key'];
export type Scores = Record<MetricKey, number | null>;

export interface Evaluation {
  base: Scores;
  adapter: Scores;
  examples: number | null;
  sdkExamples: number | null;
  gatePassed: boolean | null;
  gateReasons: string[];
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function scores(value: unknown): Scores {
  const source = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  return {
    exact_match: num(source.exact_match),
    edit_similarity: num(source.edit_similarity),
    sdk_api_recall: num(source.sdk_api_recall),
    syntax_validity: num(source.syntax_validity),
  };
}

/** The base-vs-adapter report of a job that reached evaluation, else null. */
export function readEvaluation(job: Job): Evaluation | null {
  const evaluation = job.evaluation;
  if (!evaluation) return null;
  const gate =
    typeof evaluation.gate === 'object' && evaluation.gate !== null
      ? (evaluation.gate as Record<string, unknown>)
      : {};
  return {
    base: scores(evaluation.base),
    adapter: scores(evaluation.adapter_scores),
    examples: num(evaluation.examples),
    sdkExamples: num(evaluation.sdk_examples),
    gatePassed: typeof gate.passed === 'boolean' ? gate.passed : null,
    gateReasons: Array.isArray(gate.reasons) ? gate.reasons.filter((r): r is string => typeof r === 'string') : [],
  };
}

/** A score in [0, 1] with three decimals, or an em dash when it was not measured. */
export function formatScore(value: number | null): string {
  return value === null ? '—' : value.toFixed(3);
}

/** adapter − base, signed: "+0.284", "−0.010"; an em dash when either is missing. */
export function formatGain(base: number | null, adapter: number | null): string {
  if (base === null || adapter === null) return '—';
  const gain = adapter - base;
  const shown = Math.abs(gain).toFixed(3);
  if (shown === '0.000') return '±0.000';
  return `${gain > 0 ? '+' : '−'}${shown}`;
}

/** Seconds left as "45 s", "12 min", "2 h 5 min". */
export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? `${hours} h` : `${hours} h ${rest} min`;
}

/** "step 120 / 600 · loss 0.7219 · ETA 3 min", leaving out what is not known yet. */
export function describeProgress(job: Job): string {
  const { step, total_steps, loss, eta_seconds } = job.progress;
  const parts: string[] = [];
  if (step !== null) parts.push(total_steps !== null ? `step ${step} / ${total_steps}` : `step ${step}`);
  if (loss !== null) parts.push(`loss ${loss.toFixed(4)}`);
  if (isActive(job) && eta_seconds !== null) parts.push(`ETA ${formatEta(eta_seconds)}`);
  return parts.join(' · ');
}

export interface RepositoryView {
  location: string;
  role: string;
  credentials_secret: string | null;
}

/** The repositories the job was asked to read (from its spec). */
export function readRepositories(job: Job): RepositoryView[] {
  const list = job.spec.repositories;
  if (!Array.isArray(list)) return [];
  return list
    .filter((r): r is Record<string, unknown> => typeof r === 'object' && r !== null)
    .map((r) => ({
      location: String(r.location ?? ''),
      role: String(r.role ?? 'consumer'),
      credentials_secret: typeof r.credentials_secret === 'string' ? r.credentials_secret : null,
    }));
}
