import {
  INSUFFICIENT_DATA,
  formatCount,
  formatInterval,
  formatLatencyMs,
  formatLines,
  formatPercent,
  formatPointsDelta,
  formatUsers,
  ratio,
  wilsonInterval,
} from './format';

describe('formatPercent', () => {
  it('shows a rate with one decimal', () => {
    expect(formatPercent(0.4251)).toBe('42.5%');
    expect(formatPercent(0)).toBe('0.0%');
    expect(formatPercent(1)).toBe('100.0%');
    expect(formatPercent(1 / 3, 2)).toBe('33.33%');
  });

  it('never rounds an imperfect rate up to 100%', () => {
    expect(formatPercent(0.99996)).toBe('99.9%');
  });

  it('says insufficient data instead of NaN, null or Infinity', () => {
    expect(formatPercent(null)).toBe(INSUFFICIENT_DATA);
    expect(formatPercent(undefined)).toBe(INSUFFICIENT_DATA);
    expect(formatPercent(Number.NaN)).toBe(INSUFFICIENT_DATA);
    expect(formatPercent(Number.POSITIVE_INFINITY)).toBe(INSUFFICIENT_DATA);
  });
});

describe('ratio', () => {
  it('divides', () => {
    expect(ratio(1, 4)).toBe(0.25);
  });
  it('has no value for an empty denominator', () => {
    expect(ratio(0, 0)).toBeNull();
    expect(ratio(3, null)).toBeNull();
    expect(formatPercent(ratio(5, 0))).toBe(INSUFFICIENT_DATA);
  });
});

describe('formatLines and counts', () => {
  it('pluralises and groups thousands', () => {
    expect(formatLines(1)).toBe('1 line');
    expect(formatLines(0)).toBe('0 lines');
    expect(formatLines(1204)).toBe('1,204 lines');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatUsers(1)).toBe('1 user');
    expect(formatUsers(12)).toBe('12 users');
  });
  it('says insufficient data when unknown', () => {
    expect(formatLines(null)).toBe(INSUFFICIENT_DATA);
    expect(formatCount(undefined)).toBe(INSUFFICIENT_DATA);
  });
});

describe('formatLatencyMs', () => {
  it('uses ms below a second and seconds above', () => {
    expect(formatLatencyMs(0.4)).toBe('<1 ms');
    expect(formatLatencyMs(87.4)).toBe('87 ms');
    expect(formatLatencyMs(999.4)).toBe('999 ms');
    expect(formatLatencyMs(1250)).toBe('1.25 s');
  });
  it('rejects impossible values', () => {
    expect(formatLatencyMs(-3)).toBe(INSUFFICIENT_DATA);
    expect(formatLatencyMs(null)).toBe(INSUFFICIENT_DATA);
  });
});

describe('comparison helpers', () => {
  it('shows a difference in percentage points', () => {
    expect(formatPointsDelta(0.35, 0.3)).toBe('+5.0 pp');
    expect(formatPointsDelta(0.3, 0.35)).toBe('−5.0 pp');
    expect(formatPointsDelta(0.3, 0.3)).toBe('±0.0 pp');
    expect(formatPointsDelta(null, 0.3)).toBe(INSUFFICIENT_DATA);
  });

  it('computes the Wilson interval', () => {
    const interval = wilsonInterval(50, 100);
    expect(interval).not.toBeNull();
    expect(interval!.low).toBeCloseTo(0.4038, 3);
    expect(interval!.high).toBeCloseTo(0.5962, 3);
    expect(formatInterval(interval)).toBe('40.4% – 59.6%');
  });

  it('has no interval without trials', () => {
    expect(wilsonInterval(0, 0)).toBeNull();
    expect(formatInterval(null)).toBe(INSUFFICIENT_DATA);
  });
});
