import { Alert, Code, List } from '@mantine/core';
import { ApiError, fieldPath } from '../api/errors';
import { describeError } from './states';

/** An API error under a form: the message and each invalid field the API named. */
export function FormError({ error }: { error: unknown }) {
  if (!error) return null;
  const fields = error instanceof ApiError ? error.fieldErrors : [];
  return (
    <Alert color="red" variant="light" role="alert" title="The platform API refused this">
      {describeError(error)}
      {fields.length > 0 ? (
        <List size="sm" mt={4}>
          {fields.map((e, i) => (
            <List.Item key={i}>
              <Code>{fieldPath(e)}</Code>: {e.msg}
            </List.Item>
          ))}
        </List>
      ) : null}
    </Alert>
  );
}

/** The API's message for one field of the request body, for the input's `error` prop. */
export function fieldError(error: unknown, field: string): string | undefined {
  if (!(error instanceof ApiError)) return undefined;
  if (error.param && (error.param === field || error.param.startsWith(`${field}.`))) {
    return error.message;
  }
  const match = error.fieldErrors.find((e) => {
    const path = fieldPath(e);
    return path === field || path.startsWith(`${field}.`);
  });
  return match?.msg;
}
