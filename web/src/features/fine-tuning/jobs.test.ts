import { describeProgress, formatEta, formatGain, formatScore, readEvaluation, type Job } from './jobs';

function job(overrides: Partial<Job>): Job {
  return {
    id: 'j',
    bu_id: 'b',
    name: 'j',
    status: 'training',
    cancel_requested: false,
    attempt: 1,
    runtime: 'local',
    gpus: 0,
    base_model: 'cove-tiny',
    spec: {},
    progress: { percent: 0, step: null, total_steps: null, loss: null, eta_seconds: null },
    reason: null,
    evaluation: null,
    dataset_hash: null,
    adapter_name: 'a',
    adapter_model_id: null,
    created_by: 'x',
    created_at: '2025-01-01T00:00:00Z',
    started_at: null,
    finished_at: null,
    updated_at: '2025-01-01T00:00:00Z',
    ...overrides,
  };
}

describe('fine-tuning job formatting', () => {
  it('writes the ETA in the unit a person reads', () => {
    expect(formatEta(null)).toBe('—');
    expect(formatEta(-1)).toBe('—');
    expect(formatEta(44.6)).toBe('45 s');
    expect(formatEta(150)).toBe('3 min');
    expect(formatEta(3600)).toBe('1 h');
    expect(formatEta(7500)).toBe('2 h 5 min');
  });

  it('signs the gain and never shows a number that was not measured', () => {
    expect(formatGain(0, 0.2838)).toBe('+0.284');
    expect(formatGain(0.12, 0.11)).toBe('−0.010');
    expect(formatGain(0.5, 0.5)).toBe('±0.000');
    expect(formatGain(null, 0.3)).toBe('—');
    expect(formatScore(null)).toBe('—');
    expect(formatScore(0.075)).toBe('0.075');
  });

  it('leaves out what is not known yet', () => {
    expect(describeProgress(job({}))).toBe('');
    expect(
      describeProgress(job({ progress: { percent: 50, step: 3, total_steps: 6, loss: 2, eta_seconds: 10 } })),
    ).toBe('step 3 / 6 · loss 2.0000 · ETA 10 s');
    // A stopped job has no ETA even if the last report had one.
    expect(
      describeProgress(
        job({ status: 'cancelled', progress: { percent: 50, step: 3, total_steps: 6, loss: 2, eta_seconds: 10 } }),
      ),
    ).toBe('step 3 / 6 · loss 2.0000');
  });

  it('reads an evaluation report, and a partial one without inventing scores', () => {
    expect(readEvaluation(job({}))).toBeNull();
    const partial = readEvaluation(
      job({ evaluation: { base: { exact_match: 0.1 }, adapter_scores: 'garbled', gate: { passed: false, reasons: ['x', 3] } } }),
    )!;
    expect(partial.base).toEqual({ exact_match: 0.1, edit_similarity: null, sdk_api_recall: null, syntax_validity: null });
    expect(partial.adapter.exact_match).toBeNull();
    expect(partial.gatePassed).toBe(false);
    expect(partial.gateReasons).toEqual(['x']);
    expect(partial.examples).toBeNull();
  });
});
