import { Button, Group, NativeSelect, Text, TextInput } from '@mantine/core';
import { useEffect, useState, type FormEvent } from 'react';
import { DIMENSIONS, FILTER_FIELDS, type FilterField } from './metrics';
import { validateRange, type OverviewFilters } from './filters';

const FILTER_LABELS: Record<FilterField, string> = {
  model_version: 'Model version',
  language: 'Language',
  ide: 'IDE',
  feature: 'Feature',
  user: 'User',
  group: 'Team (group)',
};

export function FiltersForm({
  value,
  onApply,
}: {
  value: OverviewFilters;
  onApply: (next: OverviewFilters) => void;
}) {
  const [draft, setDraft] = useState(value);
  const [problem, setProblem] = useState<string | null>(null);
  const serialised = JSON.stringify(value);
  useEffect(() => setDraft(JSON.parse(serialised) as OverviewFilters), [serialised]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const error = validateRange(draft.from, draft.to);
    setProblem(error);
    if (error === null) onApply(draft);
  };

  return (
    <form onSubmit={submit} aria-label="Dashboard filters">
      <Group align="flex-end" gap="sm" wrap="wrap">
        <TextInput
          type="date"
          label="From"
          value={draft.from}
          onChange={(e) => setDraft({ ...draft, from: e.currentTarget.value })}
          w={160}
        />
        <TextInput
          type="date"
          label="To"
          value={draft.to}
          onChange={(e) => setDraft({ ...draft, to: e.currentTarget.value })}
          w={160}
        />
        <NativeSelect
          label="Break down by"
          value={draft.by}
          onChange={(e) =>
            setDraft({ ...draft, by: e.currentTarget.value as OverviewFilters['by'] })
          }
          data={DIMENSIONS.filter((d) => d.value !== 'day').map((d) => ({
            value: d.value,
            label: d.label,
          }))}
          w={170}
        />
        {FILTER_FIELDS.map((field) => (
          <TextInput
            key={field}
            label={FILTER_LABELS[field]}
            placeholder="any"
            value={draft.filters[field] ?? ''}
            onChange={(e) => {
              const text = e.currentTarget.value;
              setDraft({ ...draft, filters: { ...draft.filters, [field]: text || undefined } });
            }}
            w={140}
          />
        ))}
        <Button type="submit">Apply filters</Button>
      </Group>
      {problem ? (
        <Text c="red" size="sm" role="alert" mt={4}>
          {problem}
        </Text>
      ) : null}
    </form>
  );
}
