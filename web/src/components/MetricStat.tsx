import { Card, Stack, Text } from '@mantine/core';
import type { ReactNode } from 'react';
import { INSUFFICIENT_DATA } from '../lib/format';

/** One headline number with what it is made of. Its accessible name is the metric's name. */
export function MetricStat({
  label,
  value,
  detail,
}: {
  label: string;
  value: string;
  detail?: ReactNode;
}) {
  const insufficient = value === INSUFFICIENT_DATA;
  return (
    <Card withBorder padding="md" role="group" aria-label={label}>
      <Stack gap={2}>
        <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
          {label}
        </Text>
        <Text
          size={insufficient ? 'md' : 'xl'}
          fw={700}
          c={insufficient ? 'dimmed' : undefined}
          data-testid="metric-value"
        >
          {value}
        </Text>
        {detail ? (
          <Text size="xs" c="dimmed">
            {detail}
          </Text>
        ) : null}
      </Stack>
    </Card>
  );
}
