import { readFilters, validateRange, writeFilters } from './filters';

const NOW = new Date('2025-03-10T12:00:00Z');

describe('overview filters in the URL', () => {
  it('defaults to the last 7 days broken down by model version', () => {
    const f = readFilters(new URLSearchParams(), NOW);
    expect(f).toEqual({ from: '2025-03-04', to: '2025-03-10', by: 'model_version', filters: {} });
  });

  it('round-trips through the query string', () => {
    const f = readFilters(
      new URLSearchParams('from=2025-01-01&to=2025-01-31&by=language&language=python&ide=vscode&bu=x'),
      NOW,
    );
    expect(f.by).toBe('language');
    expect(f.filters).toEqual({ language: 'python', ide: 'vscode' });
    const written = writeFilters(new URLSearchParams('bu=x&feature=chat'), { ...f, filters: { language: 'go' } });
    expect(written.get('bu')).toBe('x');
    expect(written.get('language')).toBe('go');
    expect(written.has('feature')).toBe(false);
    expect(written.get('from')).toBe('2025-01-01');
  });

  it('ignores malformed dates and dimensions from a hand-edited URL', () => {
    const f = readFilters(new URLSearchParams('from=2025-02-30&to=yesterday&by=drop table'), NOW);
    expect(f.from).toBe('2025-03-04');
    expect(f.to).toBe('2025-03-10');
    expect(f.by).toBe('model_version');
  });

  it('validates a range', () => {
    expect(validateRange('2025-01-02', '2025-01-01')).toMatch(/must not be after/);
    expect(validateRange('2025-01-01', '2025-01-01')).toBeNull();
    expect(validateRange('nope', '2025-01-01')).toMatch(/start date/);
  });
});
