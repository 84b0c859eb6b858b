import {
  Alert,
  Badge,
  Button,
  Card,
  Code,
  Grid,
  Group,
  Stack,
  Table,
  Text,
  TextInput,
  Textarea,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState, type FormEvent } from 'react';
import { api, call, type BusinessUnit, type DryRunResult, type PolicyView } from '../../api/client';
import { ApiError } from '../../api/errors';
import { queryKeys } from '../../api/queries';
import { WithBu } from '../../components/CurrentBu';
import { FormError } from '../../components/FormError';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState, QueryState } from '../../components/states';
import { formatDateTime } from '../../lib/format';
import { parsePolicyText, prettyJson } from './policyJson';

const EXAMPLE = `{
  "content": {
    "actions": {"github_token": "block"},
    "exclude_paths": ["**/fixtures/secrets/**"]
  },
  "limits": {"max_tokens": 512}
}`;

function PolicyEditor({ bu, policy }: { bu: BusinessUnit; policy: PolicyView }) {
  const client = useQueryClient();
  const [text, setText] = useState(() => prettyJson(policy.document));
  const [parseError, setParseError] = useState<string | null>(null);
  useEffect(() => {
    setText(prettyJson(policy.document));
  }, [policy.version, policy.document]);

  const save = useMutation({
    mutationFn: (document: Record<string, unknown>) =>
      call(
        api.PUT('/api/v1/bus/{bu_id}/policy', {
          params: { path: { bu_id: bu.id } },
          body: { document, expected_version: policy.version },
        }),
        `/api/v1/bus/${bu.id}/policy`,
      ),
    onSuccess: (saved) => {
      client.setQueryData(queryKeys.policy(bu.id), saved);
      notifications.show({ color: 'green', message: `Policy of ${bu.slug} saved (version ${saved.version})` });
    },
  });

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const parsed = parsePolicyText(text);
    if (!parsed.ok) {
      setParseError(parsed.message);
      return;
    }
    setParseError(null);
    save.mutate(parsed.document);
  };
  const conflict = save.error instanceof ApiError && save.error.code === 'version_conflict';

  return (
    <form onSubmit={submit} aria-labelledby="policy-editor-heading">
      <Stack gap="xs">
        <Title order={2} size="h4" id="policy-editor-heading">
          Overrides of {bu.slug}
        </Title>
        <Text size="xs" c="dimmed">
          Version {policy.version}
          {policy.updated_by ? ` · by ${policy.updated_by}` : ''}
          {policy.updated_at ? ` · ${formatDateTime(policy.updated_at)}` : ''}. Only what differs
          from the organisation's default; limits can only tighten it, exclusions add up.
        </Text>
        {Object.keys(policy.document).length === 0 ? (
          <EmptyState title="No overrides yet">
            {bu.slug} runs the organisation&apos;s default policy, shown under Effective policy.
            Write overrides below, or insert an example.
          </EmptyState>
        ) : null}
        <Textarea
          label="Policy overrides (JSON)"
          description={
            <>
              Sections: <Code>content</Code> (<Code>default_action</Code>, <Code>actions</Code> per
              secret type: redact / block / audit, <Code>exclude_paths</Code>), <Code>limits</Code>,{' '}
              <Code>routing</Code>, <Code>model_access</Code>.
            </>
          }
          value={text}
          onChange={(e) => {
            setText(e.currentTarget.value);
            setParseError(null);
          }}
          error={parseError}
          autosize
          minRows={10}
          maxRows={30}
          spellCheck={false}
          styles={{ input: { fontFamily: 'ui-monospace, monospace', fontSize: 13 } }}
        />
        <FormError error={save.error} />
        {conflict ? (
          <Button
            variant="default"
            onClick={() => {
              save.reset();
              void client.invalidateQueries({ queryKey: queryKeys.policy(bu.id) });
            }}
          >
            Reload the current policy
          </Button>
        ) : null}
        <Group>
          <Button type="submit" loading={save.isPending}>
            Save policy
          </Button>
          <Button variant="subtle" onClick={() => setText(EXAMPLE)}>
            Insert an example
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function outcome(result: DryRunResult): { label: string; color: string } {
  if (result.excluded) return { label: 'Excluded: nothing is sent', color: 'gray' };
  if (result.blocked) return { label: 'Blocked: the request is refused', color: 'red' };
  if (result.findings.length > 0) return { label: 'Forwarded with changes', color: 'orange' };
  return { label: 'Forwarded unchanged', color: 'green' };
}

function DryRun({ bu, version }: { bu: BusinessUnit; version: number }) {
  const [text, setText] = useState('token = "ghp_Ab3dEf5hIj7lMn9pQr2tUv4xYz6bCd8fGh0k"\nprint(token)');
  const [path, setPath] = useState('');
  const [submitted, setSubmitted] = useState<{ text: string; path: string } | null>(null);
  // Keyed on the policy version: saving a policy re-runs the sample under the new one.
  const result = useQuery({
    queryKey: ['bus', bu.id, 'policy', 'dry-run', version, submitted],
    enabled: submitted !== null,
    staleTime: 0,
    queryFn: () =>
      call(
        api.POST('/api/v1/bus/{bu_id}/policy/dry-run', {
          params: { path: { bu_id: bu.id } },
          body: { text: submitted!.text, path: submitted!.path || null },
        }),
        `/api/v1/bus/${bu.id}/policy/dry-run`,
      ),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setSubmitted({ text, path: path.trim() });
  };
  return (
    <Stack gap="xs">
      <form onSubmit={submit} aria-labelledby="dry-run-heading">
        <Stack gap="xs">
          <Title order={2} size="h4" id="dry-run-heading">
            Dry run
          </Title>
          <Text size="xs" c="dimmed">
            What the gateway would forward to the model for this prompt under {bu.slug}'s effective
            policy (the same scanner the gateway runs). Nothing is sent to a model.
          </Text>
          <Textarea
            label="Sample prompt"
            value={text}
            onChange={(e) => setText(e.currentTarget.value)}
            autosize
            minRows={4}
            spellCheck={false}
            styles={{ input: { fontFamily: 'ui-monospace, monospace', fontSize: 13 } }}
          />
          <TextInput
            label="File path (optional)"
            placeholder="src/app/settings.py"
            value={path}
            onChange={(e) => setPath(e.currentTarget.value)}
          />
          <Group>
            <Button type="submit" variant="light">
              Run dry run
            </Button>
          </Group>
        </Stack>
      </form>
      <section aria-label="Dry run result" aria-live="polite">
        {submitted === null ? null : result.isPending ? (
          <LoadingState label="Running the policy…" />
        ) : result.isError ? (
          <ErrorState error={result.error} />
        ) : (
          <Stack gap="xs">
            <Group gap="xs">
              <Text size="sm" fw={600}>
                Outcome:
              </Text>
              <Badge color={outcome(result.data).color} data-testid="dry-run-outcome">
                {outcome(result.data).label}
              </Badge>
              <Text size="xs" c="dimmed">
                policy version {version}
              </Text>
            </Group>
            <Text size="sm" fw={600}>
              What the model would receive
            </Text>
            <Code block data-testid="dry-run-text" aria-label="What the model would receive">
              {result.data.blocked || result.data.excluded ? '(nothing: the request is not forwarded)' : result.data.text}
            </Code>
            {result.data.findings.length > 0 ? (
              <Table withTableBorder aria-label="Findings">
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th scope="col">Secret type</Table.Th>
                    <Table.Th scope="col">Action</Table.Th>
                    <Table.Th scope="col">Rule</Table.Th>
                    <Table.Th scope="col">Characters</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {result.data.findings.map((f, i) => (
                    <Table.Tr key={`${f.rule}-${f.start}-${i}`}>
                      <Table.Td>{f.type}</Table.Td>
                      <Table.Td>{f.action}</Table.Td>
                      <Table.Td>
                        <Code>{f.rule}</Code>
                      </Table.Td>
                      <Table.Td>
                        {f.start}–{f.end}
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            ) : (
              <Text size="sm" c="dimmed">
                No secrets found.
              </Text>
            )}
          </Stack>
        )}
      </section>
    </Stack>
  );
}

function PolicyOfBu({ bu }: { bu: BusinessUnit }) {
  const policy = useQuery({
    queryKey: queryKeys.policy(bu.id),
    queryFn: () =>
      call(
        api.GET('/api/v1/bus/{bu_id}/policy', { params: { path: { bu_id: bu.id } } }),
        `/api/v1/bus/${bu.id}/policy`,
      ),
  });
  return (
    <QueryState query={policy} loading="Loading the policy…">
      {(view) => (
        <Grid gap="lg">
          <Grid.Col span={{ base: 12, lg: 6 }}>
            <Stack gap="lg">
              <PolicyEditor bu={bu} policy={view} />
              <Card withBorder padding="sm" component="section" aria-labelledby="effective-heading">
                <Title order={2} size="h5" id="effective-heading">
                  Effective policy (what the gateway enforces)
                </Title>
                <Code block mt="xs" data-testid="effective-policy">
                  {prettyJson(view.effective)}
                </Code>
              </Card>
            </Stack>
          </Grid.Col>
          <Grid.Col span={{ base: 12, lg: 6 }}>
            <DryRun bu={bu} version={view.version} />
          </Grid.Col>
        </Grid>
      )}
    </QueryState>
  );
}

export function PoliciesPage() {
  return (
    <Page
      title="Policies"
      description="Secret redaction and blocking, content exclusion, limits, routing and model access of a business unit, layered on the organisation's default."
    >
      <Alert variant="light" color="blue" role="note">
        Changes reach every gateway within seconds (Postgres notification) and are written to the
        audit log with their difference.
      </Alert>
      <WithBu>{(bu) => <PolicyOfBu bu={bu} />}</WithBu>
    </Page>
  );
}
