// Loading, empty and error states shared by every page: a page never renders a blank table
// or chart, it says what is happening.
import { Alert, Center, Code, Group, List, Loader, Stack, Text } from '@mantine/core';
import type { ReactNode } from 'react';
import { ApiError, fieldPath } from '../api/errors';

export function LoadingState({ label }: { label: string }) {
  return (
    <Center py="xl">
      <Group gap="sm" role="status" aria-live="polite">
        <Loader size="sm" aria-hidden />
        <Text c="dimmed">{label}</Text>
      </Group>
    </Center>
  );
}

export function EmptyState({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <Stack gap={4} py="lg" align="center" role="status" data-testid="empty-state">
      <Text fw={600}>{title}</Text>
      {children ? (
        <Text c="dimmed" size="sm" ta="center" maw={560}>
          {children}
        </Text>
      ) : null}
    </Stack>
  );
}

export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

export function ErrorState({ error, title }: { error: unknown; title?: string }) {
  const apiError = error instanceof ApiError ? error : null;
  const heading =
    title ??
    (apiError && apiError.status > 0
      ? `The platform API answered ${apiError.status}`
      : 'Something went wrong');
  return (
    <Alert color="red" title={heading} role="alert" variant="light">
      <Stack gap={6}>
        <Text size="sm">{describeError(error)}</Text>
        {apiError && apiError.fieldErrors.length > 0 ? (
          <List size="sm" spacing={2}>
            {apiError.fieldErrors.map((e, i) => (
              <List.Item key={`${fieldPath(e)}-${i}`}>
                <Code>{fieldPath(e)}</Code>: {e.msg}
              </List.Item>
            ))}
          </List>
        ) : null}
        {apiError ? (
          <Text size="xs" c="dimmed">
            {apiError.code ? <>code <Code>{apiError.code}</Code></> : null}
            {apiError.path ? <> · {apiError.path}</> : null}
            {apiError.requestId ? <> · request id <Code>{apiError.requestId}</Code></> : null}
          </Text>
        ) : null}
      </Stack>
    </Alert>
  );
}

/** A state for a feature whose API does not exist on this platform yet. */
export function NotAvailableState({
  title,
  endpoint,
  children,
}: {
  title: string;
  endpoint: string;
  children?: ReactNode;
}) {
  return (
    <Alert color="yellow" title={title} role="alert" variant="light">
      <Stack gap={4}>
        <Text size="sm">
          This platform does not serve <Code>{endpoint}</Code> yet (it answered 404 / is absent
          from its OpenAPI document).
        </Text>
        {children ? <Text size="sm">{children}</Text> : null}
      </Stack>
    </Alert>
  );
}

interface QueryLike<T> {
  isPending: boolean;
  isError: boolean;
  error: unknown;
  data: T | undefined;
}

/** Renders loading / error / empty / data for one react-query result. */
export function QueryState<T>({
  query,
  loading,
  isEmpty,
  empty,
  children,
}: {
  query: QueryLike<T>;
  loading: string;
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  children: (data: T) => ReactNode;
}) {
  if (query.isPending) return <LoadingState label={loading} />;
  if (query.isError || query.data === undefined) return <ErrorState error={query.error} />;
  if (isEmpty?.(query.data)) return <>{empty}</>;
  return <>{children(query.data)}</>;
}
