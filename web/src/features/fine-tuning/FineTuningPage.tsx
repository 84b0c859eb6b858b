import {
  Alert,
  Anchor,
  Badge,
  Button,
  Card,
  Code,
  Group,
  List,
  NativeSelect,
  Progress,
  ScrollArea,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { api, call, type BusinessUnit, type Schemas } from '../../api/client';
import { useBuModels } from '../../api/queries';
import { WithBu } from '../../components/CurrentBu';
import { FormError, fieldError } from '../../components/FormError';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState, QueryState } from '../../components/states';
import { formatDateTime } from '../../lib/format';
import {
  METRICS,
  STATUS_COLOR,
  canCancel,
  canRetry,
  describeProgress,
  formatGain,
  formatScore,
  isActive,
  readEvaluation,
  readReason,
  readRepositories,
  type Job,
} from './jobs';

// While a job runs, its row, detail and log refresh this often (the runner reports every ~2 s).
const POLL_MS = 3000;

type Preset = Schemas['JobCreate']['preset'];
type Role = Schemas['RepositoryInput']['role'];

const jobsKey = (buId: string) => ['bus', buId, 'finetune-jobs'] as const;

function useJobs(buId: string) {
  return useQuery({
    queryKey: jobsKey(buId),
    queryFn: () =>
      call(
        api.GET('/api/v1/bus/{bu_id}/finetune-jobs', { params: { path: { bu_id: buId } } }),
        `/api/v1/bus/${buId}/finetune-jobs`,
      ),
    refetchInterval: (query) => ((query.state.data ?? []).some(isActive) ? POLL_MS : false),
  });
}

function useJob(buId: string, jobId: string) {
  return useQuery({
    queryKey: [...jobsKey(buId), jobId],
    queryFn: () =>
      call(
        api.GET('/api/v1/bus/{bu_id}/finetune-jobs/{job_id}', {
          params: { path: { bu_id: buId, job_id: jobId } },
        }),
        `/api/v1/bus/${buId}/finetune-jobs/${jobId}`,
      ),
    refetchInterval: (query) => (query.state.data && isActive(query.state.data) ? POLL_MS : false),
  });
}

/** Cancel and retry, for a row of the list and for the detail alike. */
function JobActions({ bu, job }: { bu: BusinessUnit; job: Job }) {
  const client = useQueryClient();
  const done = async (verb: string) => {
    await client.invalidateQueries({ queryKey: jobsKey(bu.id) });
    notifications.show({ color: 'green', message: `${job.name}: ${verb}` });
  };
  const path = { bu_id: bu.id, job_id: job.id };
  const cancel = useMutation({
    mutationFn: () =>
      call(
        api.POST('/api/v1/bus/{bu_id}/finetune-jobs/{job_id}/cancel', { params: { path } }),
        `/api/v1/bus/${bu.id}/finetune-jobs/${job.id}/cancel`,
      ),
    onSuccess: (updated) =>
      done(updated.status === 'cancelled' ? 'cancelled' : 'cancel requested; it stops at its next check'),
  });
  const retry = useMutation({
    mutationFn: () =>
      call(
        api.POST('/api/v1/bus/{bu_id}/finetune-jobs/{job_id}/retry', { params: { path } }),
        `/api/v1/bus/${bu.id}/finetune-jobs/${job.id}/retry`,
      ),
    onSuccess: (updated) => done(`attempt ${updated.attempt} queued`),
  });
  const error = cancel.error ?? retry.error;
  return (
    <Stack gap={4}>
      <Group gap="xs" wrap="nowrap">
        {canCancel(job) ? (
          <Button
            size="xs"
            variant="light"
            color="red"
            loading={cancel.isPending}
            onClick={() => cancel.mutate()}
            aria-label={`Cancel ${job.name}`}
          >
            Cancel
          </Button>
        ) : null}
        {canRetry(job) ? (
          <Button
            size="xs"
            variant="light"
            loading={retry.isPending}
            onClick={() => retry.mutate()}
            aria-label={`Retry ${job.name}`}
          >
            Retry
          </Button>
        ) : null}
        {job.cancel_requested && isActive(job) ? (
          <Text size="xs" c="dimmed">
            stopping…
          </Text>
        ) : null}
      </Group>
      {error ? <FormError error={error} /> : null}
    </Stack>
  );
}

function StatusBadge({ job }: { job: Job }) {
  const reason = readReason(job);
  return (
    <Stack gap={2}>
      <Badge color={STATUS_COLOR[job.status] ?? 'gray'} variant="light">
        {job.status}
      </Badge>
      {reason ? (
        <Text size="xs" c="dimmed">
          <Code>{reason.code}</Code>
        </Text>
      ) : null}
    </Stack>
  );
}

function JobProgress({ job }: { job: Job }) {
  const detail = describeProgress(job);
  return (
    <Stack gap={2} miw={180}>
      <Group gap="xs" wrap="nowrap">
        <Progress
          value={job.progress.percent}
          color={STATUS_COLOR[job.status] ?? 'gray'}
          aria-label={`Progress of ${job.name}`}
          style={{ flex: 1 }}
        />
        <Text size="xs">{job.progress.percent.toFixed(0)}%</Text>
      </Group>
      {detail ? (
        <Text size="xs" c="dimmed">
          {detail}
        </Text>
      ) : null}
    </Stack>
  );
}

function JobsTable({ bu, selected, onSelect }: { bu: BusinessUnit; selected: string | null; onSelect: (id: string) => void }) {
  const jobs = useJobs(bu.id);
  return (
    <section aria-labelledby="jobs-heading">
      <Stack gap="xs">
        <Title order={2} size="h4" id="jobs-heading">
          Fine-tuning jobs of {bu.slug}
        </Title>
        <QueryState
          query={jobs}
          loading="Loading fine-tuning jobs…"
          isEmpty={(list) => list.length === 0}
          empty={
            <EmptyState title="No fine-tuning jobs yet">
              Submit one below: name the SDK repository and the code that uses it, pick a base
              model, and Cove builds the dataset, trains a LoRA adapter and registers it if it beats
              the base.
            </EmptyState>
          }
        >
          {(list) => (
            <Table.ScrollContainer minWidth={900}>
              <Table striped withTableBorder aria-label="Fine-tuning jobs">
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th scope="col">Job</Table.Th>
                    <Table.Th scope="col">Status</Table.Th>
                    <Table.Th scope="col">Progress</Table.Th>
                    <Table.Th scope="col">Base model</Table.Th>
                    <Table.Th scope="col">Attempt</Table.Th>
                    <Table.Th scope="col">Created</Table.Th>
                    <Table.Th scope="col">Actions</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {list.map((job) => (
                    <Table.Tr key={job.id}>
                      <Table.Th scope="row">
                        <Button
                          variant="subtle"
                          size="compact-sm"
                          onClick={() => onSelect(job.id)}
                          aria-label={job.name}
                          aria-pressed={job.id === selected}
                        >
                          {job.name}
                        </Button>
                      </Table.Th>
                      <Table.Td>
                        <StatusBadge job={job} />
                      </Table.Td>
                      <Table.Td>
                        <JobProgress job={job} />
                      </Table.Td>
                      <Table.Td>{job.base_model}</Table.Td>
                      <Table.Td>{job.attempt}</Table.Td>
                      <Table.Td>
                        {formatDateTime(job.created_at)}
                        <Text size="xs" c="dimmed">
                          by {job.created_by}
                        </Text>
                      </Table.Td>
                      <Table.Td>
                        <JobActions bu={bu} job={job} />
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
        </QueryState>
      </Stack>
    </section>
  );
}

function EvaluationResults({ job }: { job: Job }) {
  const evaluation = readEvaluation(job);
  if (!evaluation) {
    return (
      <Text size="sm" c="dimmed">
        {isActive(job)
          ? 'The base model and the adapter are compared on held-out files once training ends.'
          : 'This job stopped before its evaluation.'}
      </Text>
    );
  }
  return (
    <Stack gap="xs">
      <Group gap="xs">
        <Text size="sm">Promotion gate:</Text>
        {evaluation.gatePassed === null ? (
          <Badge variant="light" color="gray">
            unknown
          </Badge>
        ) : (
          <Badge variant="filled" color={evaluation.gatePassed ? 'green' : 'red'}>
            {evaluation.gatePassed ? 'passed' : 'not passed'}
          </Badge>
        )}
        <Text size="xs" c="dimmed">
          {evaluation.examples ?? '—'} held-out examples, {evaluation.sdkExamples ?? '—'} of them at SDK call sites
        </Text>
      </Group>
      <Table withTableBorder aria-label="Base model vs adapter" maw={640}>
        <Table.Thead>
          <Table.Tr>
            <Table.Th scope="col">Metric</Table.Th>
            <Table.Th scope="col">Base</Table.Th>
            <Table.Th scope="col">Adapter</Table.Th>
            <Table.Th scope="col">Gain</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {METRICS.map(({ key, label }) => (
            <Table.Tr key={key}>
              <Table.Th scope="row">{label}</Table.Th>
              <Table.Td>{formatScore(evaluation.base[key])}</Table.Td>
              <Table.Td>{formatScore(evaluation.adapter[key])}</Table.Td>
              <Table.Td>{formatGain(evaluation.base[key], evaluation.adapter[key])}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {evaluation.gateReasons.length > 0 ? (
        <List size="sm" spacing={2} aria-label="Why the gate was not passed">
          {evaluation.gateReasons.map((reason) => (
            <List.Item key={reason}>{reason}</List.Item>
          ))}
        </List>
      ) : null}
    </Stack>
  );
}

const LEVEL_COLOR: Record<Schemas['JobLogLine']['level'], string> = {
  info: 'dimmed',
  warning: 'orange',
  error: 'red',
};

const LOG_PAGE = 1000;

function JobLog({ bu, job }: { bu: BusinessUnit; job: Job }) {
  const client = useQueryClient();
  const key = [...jobsKey(bu.id), job.id, 'logs'];
  const logs = useQuery({
    queryKey: key,
    // Each refresh asks only for the lines after the ones already shown.
    queryFn: async (): Promise<Schemas['JobLogs']> => {
      const shown = client.getQueryData<Schemas['JobLogs']>(key);
      let lines = shown?.lines ?? [];
      let after = shown?.next_after ?? 0;
      for (;;) {
        const page = await call(
          api.GET('/api/v1/bus/{bu_id}/finetune-jobs/{job_id}/logs', {
            params: { path: { bu_id: bu.id, job_id: job.id }, query: { after, limit: LOG_PAGE } },
          }),
          `/api/v1/bus/${bu.id}/finetune-jobs/${job.id}/logs`,
        );
        lines = lines.concat(page.lines);
        after = page.next_after;
        if (page.lines.length < LOG_PAGE) break;
      }
      return { job_id: job.id, lines, next_after: after };
    },
    refetchInterval: isActive(job) ? POLL_MS : false,
  });
  // The job's last lines are written as it ends, after the last poll: read them when its state
  // (or attempt) changes.
  const { refetch } = logs;
  const seenState = useRef(`${job.status}/${job.attempt}`);
  useEffect(() => {
    const state = `${job.status}/${job.attempt}`;
    if (state === seenState.current) return;
    seenState.current = state;
    void refetch();
  }, [job.status, job.attempt, refetch]);
  return (
    <QueryState
      query={logs}
      loading="Loading the log…"
      isEmpty={(data) => data.lines.length === 0}
      empty={<EmptyState title="No log lines yet" />}
    >
      {(data) => (
        <ScrollArea.Autosize mah={320} type="auto">
          <Stack gap={0} role="log" aria-label={`Log of ${job.name}`} tabIndex={0} ff="monospace">
            {data.lines.map((line) => (
              <Text key={line.id} size="xs" c={LEVEL_COLOR[line.level]}>
                {formatDateTime(line.created_at)} [{line.attempt}] {line.level}: {line.message}
              </Text>
            ))}
          </Stack>
        </ScrollArea.Autosize>
      )}
    </QueryState>
  );
}

function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <Stack gap={0}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
        {label}
      </Text>
      <Text size="sm" component="div">
        {children}
      </Text>
    </Stack>
  );
}

function JobDetail({ bu, jobId, onClose }: { bu: BusinessUnit; jobId: string; onClose: () => void }) {
  const job = useJob(bu.id, jobId);
  if (job.isPending) return <LoadingState label="Loading the job…" />;
  if (job.isError) return <ErrorState error={job.error} title="Could not load the job" />;
  const j = job.data;
  const reason = readReason(j);
  const preset = typeof j.spec.preset === 'string' ? j.spec.preset : '—';
  return (
    <Card withBorder padding="md" component="section" aria-labelledby="job-heading">
      <Stack gap="md">
        <Group justify="space-between" align="flex-start">
          <Stack gap={2}>
            <Title order={2} size="h4" id="job-heading">
              Job {j.name}
            </Title>
            <Group gap="xs">
              <Badge color={STATUS_COLOR[j.status] ?? 'gray'} variant="light">
                {j.status}
              </Badge>
              <Text size="xs" c="dimmed">
                attempt {j.attempt} · {j.runtime}
                {j.gpus > 0 ? ` · ${j.gpus} GPU(s)` : ' · CPU'}
              </Text>
            </Group>
          </Stack>
          <Group gap="xs">
            <JobActions bu={bu} job={j} />
            <Button size="xs" variant="default" onClick={onClose}>
              Close
            </Button>
          </Group>
        </Group>
        {reason ? (
          <Alert
            color={j.status === 'cancelled' ? 'orange' : 'red'}
            variant="light"
            title={`${j.status === 'cancelled' ? 'Cancelled' : 'Failed'}: ${reason.code}`}
          >
            {reason.message}
          </Alert>
        ) : null}
        <JobProgress job={j} />
        <SimpleGrid cols={{ base: 1, sm: 3 }} spacing="sm">
          <Fact label="Base model">{j.base_model}</Fact>
          <Fact label="Preset">{preset}</Fact>
          <Fact label="Adapter">
            {j.adapter_name}
            {j.adapter_model_id ? (
              <Text size="xs" c="green">
                registered in the catalog; attach it to a deployment on{' '}
                <Anchor component={Link} to={`/deployments?bu=${bu.id}`} size="xs">
                  Models &amp; deployments
                </Anchor>
              </Text>
            ) : (
              <Text size="xs" c="dimmed">
                not registered
              </Text>
            )}
          </Fact>
          <Fact label="Started">{formatDateTime(j.started_at)}</Fact>
          <Fact label="Finished">{formatDateTime(j.finished_at)}</Fact>
          <Fact label="Dataset">{j.dataset_hash ? <Code>{j.dataset_hash.slice(0, 19)}</Code> : '—'}</Fact>
        </SimpleGrid>
        <Fact label="Repositories">
          <List size="sm" spacing={2}>
            {readRepositories(j).map((repo) => (
              <List.Item key={repo.location}>
                <Code>{repo.location}</Code> <Badge size="xs" variant="light">{repo.role}</Badge>
                {repo.credentials_secret ? (
                  <Text span size="xs" c="dimmed">
                    {' '}
                    credentials from {repo.credentials_secret}
                  </Text>
                ) : null}
              </List.Item>
            ))}
          </List>
        </Fact>
        <Stack gap="xs">
          <Title order={3} size="h5">
            Evaluation on held-out files
          </Title>
          <EvaluationResults job={j} />
        </Stack>
        <Stack gap="xs">
          <Title order={3} size="h5">
            Log
          </Title>
          <JobLog bu={bu} job={j} />
        </Stack>
      </Stack>
    </Card>
  );
}

interface RepositoryRow {
  location: string;
  role: Role;
  credentials_secret: string;
}

const HYPER_FIELDS = [
  { key: 'rank', label: 'LoRA rank', integer: true },
  { key: 'learning_rate', label: 'Learning rate', integer: false },
  { key: 'epochs', label: 'Epochs', integer: false },
  { key: 'max_steps', label: 'Max steps', integer: true },
] as const;

type HyperKey = (typeof HYPER_FIELDS)[number]['key'];

function emptyForm() {
  return {
    name: '',
    base_model: '',
    preset: 'small' as Preset,
    adapter_name: '',
    repositories: [
      { location: '', role: 'sdk', credentials_secret: '' },
      { location: '', role: 'consumer', credentials_secret: '' },
    ] as RepositoryRow[],
    hyper: { rank: '', learning_rate: '', epochs: '', max_steps: '' } as Record<HyperKey, string>,
  };
}

function repositoryError(error: unknown, index: number, field: string): string | undefined {
  return fieldError(error, `repositories[${index}].${field}`) ?? fieldError(error, `repositories.${index}.${field}`);
}

function SubmitForm({ bu, onCreated }: { bu: BusinessUnit; onCreated: (id: string) => void }) {
  const client = useQueryClient();
  const models = useBuModels(bu.id);
  const [form, setForm] = useState(emptyForm);
  const bases = (models.data ?? []).filter((m) => m.kind === 'base');
  const submit = useMutation({
    mutationFn: () => {
      const hyperparameters: Schemas['HyperparameterOverrides'] = {};
      for (const { key } of HYPER_FIELDS) {
        const raw = form.hyper[key].trim();
        if (raw !== '') hyperparameters[key] = Number(raw);
      }
      return call(
        api.POST('/api/v1/bus/{bu_id}/finetune-jobs', {
          params: { path: { bu_id: bu.id } },
          body: {
            name: form.name.trim(),
            base_model: form.base_model,
            preset: form.preset,
            adapter_name: form.adapter_name.trim() || null,
            repositories: form.repositories.map((r) => ({
              location: r.location.trim(),
              role: r.role,
              credentials_secret: r.credentials_secret.trim() || null,
            })),
            hyperparameters,
          },
        }),
        `/api/v1/bus/${bu.id}/finetune-jobs`,
      );
    },
    onSuccess: async (created) => {
      setForm(emptyForm());
      await client.invalidateQueries({ queryKey: jobsKey(bu.id) });
      notifications.show({ color: 'green', message: `Job ${created.name} queued` });
      onCreated(created.id);
    },
  });
  const err = submit.error;
  const setRepository = (index: number, change: Partial<RepositoryRow>) =>
    setForm({
      ...form,
      repositories: form.repositories.map((r, i) => (i === index ? { ...r, ...change } : r)),
    });
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    submit.mutate();
  };
  return (
    <form onSubmit={onSubmit} aria-labelledby="submit-heading">
      <Stack gap="sm" maw={760}>
        <Title order={2} size="h4" id="submit-heading">
          Fine-tune on private code
        </Title>
        <Text size="sm" c="dimmed">
          Mark the repository of the SDK and the repositories of code that uses it. Cove cuts
          fill-in-the-middle examples around the SDK's call sites, trains a LoRA adapter, and
          registers it only if it beats the base model on held-out files.
        </Text>
        <TextInput
          label="Job name"
          description="Lower-case letters, digits and dashes; unique in this business unit"
          value={form.name}
          onChange={(e) => setForm({ ...form, name: e.currentTarget.value })}
          error={fieldError(err, 'name')}
          required
        />
        <fieldset style={{ border: 0, padding: 0, margin: 0 }}>
          <Stack gap="xs">
            <Text component="legend" size="sm" fw={500}>
              Repositories
            </Text>
            {form.repositories.map((repo, index) => (
              <Group key={index} align="flex-start" grow preventGrowOverflow={false} wrap="nowrap">
                <TextInput
                  label={`Repository ${index + 1}`}
                  placeholder="https://git.example.com/acme/sdk.git or /srv/code/sdk"
                  value={repo.location}
                  onChange={(e) => setRepository(index, { location: e.currentTarget.value })}
                  error={repositoryError(err, index, 'location')}
                  required
                  style={{ flex: 3 }}
                />
                <NativeSelect
                  label={`Role of repository ${index + 1}`}
                  value={repo.role}
                  onChange={(e) => setRepository(index, { role: e.currentTarget.value as Role })}
                  data={[
                    { value: 'sdk', label: 'SDK' },
                    { value: 'consumer', label: 'consumer code' },
                  ]}
                  style={{ flex: 1 }}
                />
                <TextInput
                  label={`Credentials secret ${index + 1}`}
                  placeholder="optional"
                  value={repo.credentials_secret}
                  onChange={(e) => setRepository(index, { credentials_secret: e.currentTarget.value })}
                  error={repositoryError(err, index, 'credentials_secret')}
                  style={{ flex: 1 }}
                />
                <Button
                  variant="subtle"
                  color="red"
                  mt={24}
                  style={{ flex: 0 }}
                  disabled={form.repositories.length <= 1}
                  onClick={() =>
                    setForm({ ...form, repositories: form.repositories.filter((_, i) => i !== index) })
                  }
                  aria-label={`Remove repository ${index + 1}`}
                >
                  Remove
                </Button>
              </Group>
            ))}
            <Group>
              <Button
                variant="light"
                size="xs"
                disabled={form.repositories.length >= 32}
                onClick={() =>
                  setForm({
                    ...form,
                    repositories: [...form.repositories, { location: '', role: 'consumer', credentials_secret: '' }],
                  })
                }
              >
                Add repository
              </Button>
            </Group>
            {fieldError(err, 'repositories') ? (
              <Text size="sm" c="red">
                {fieldError(err, 'repositories')}
              </Text>
            ) : null}
          </Stack>
        </fieldset>
        <Group grow align="flex-start">
          <NativeSelect
            label="Base model"
            description={
              models.isError
                ? 'The catalog could not be loaded'
                : bases.length === 0 && !models.isPending
                  ? `No base model is granted to ${bu.slug}`
                  : 'A FIM code model granted to this business unit'
            }
            value={form.base_model}
            onChange={(e) => setForm({ ...form, base_model: e.currentTarget.value })}
            data={[
              { value: '', label: 'Choose a base model' },
              ...bases.map((m) => ({
                value: m.name,
                label: m.fim_tokens ? m.name : `${m.name} (no FIM tokens)`,
              })),
            ]}
            error={fieldError(err, 'base_model')}
            required
          />
          <NativeSelect
            label="Preset"
            description="Rank, learning rate, epochs and context length"
            value={form.preset}
            onChange={(e) => setForm({ ...form, preset: e.currentTarget.value as Preset })}
            data={[
              { value: 'small', label: 'small (rank 8)' },
              { value: 'medium', label: 'medium' },
              { value: 'large', label: 'large' },
            ]}
          />
        </Group>
        <fieldset style={{ border: 0, padding: 0, margin: 0 }}>
          <Stack gap="xs">
            <Text component="legend" size="sm" fw={500}>
              Explicit hyperparameters (optional, replace the preset's)
            </Text>
            <Group grow align="flex-start">
              {HYPER_FIELDS.map(({ key, label, integer }) => (
                <TextInput
                  key={key}
                  label={label}
                  inputMode={integer ? 'numeric' : 'decimal'}
                  placeholder="preset"
                  value={form.hyper[key]}
                  onChange={(e) => setForm({ ...form, hyper: { ...form.hyper, [key]: e.currentTarget.value } })}
                  error={fieldError(err, `hyperparameters.${key}`)}
                />
              ))}
            </Group>
            {fieldError(err, 'hyperparameters') && !HYPER_FIELDS.some(({ key }) => fieldError(err, `hyperparameters.${key}`)) ? (
              <Text size="sm" c="red">
                {fieldError(err, 'hyperparameters')}
              </Text>
            ) : null}
          </Stack>
        </fieldset>
        <TextInput
          label="Adapter name"
          description={`The catalog name of the adapter (default: ${bu.slug}-<job name>)`}
          value={form.adapter_name}
          onChange={(e) => setForm({ ...form, adapter_name: e.currentTarget.value })}
          error={fieldError(err, 'adapter_name')}
        />
        <FormError error={err} />
        <Group>
          <Button type="submit" loading={submit.isPending}>
            Start fine-tuning
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function FineTuningOfBu({ bu }: { bu: BusinessUnit }) {
  const [params, setParams] = useSearchParams();
  const selected = params.get('job');
  const select = (id: string | null) =>
    setParams((prev) => {
      const next = new URLSearchParams(prev);
      if (id) next.set('job', id);
      else next.delete('job');
      return next;
    });
  return (
    <Stack gap="lg">
      <JobsTable bu={bu} selected={selected} onSelect={select} />
      {selected ? <JobDetail key={selected} bu={bu} jobId={selected} onClose={() => select(null)} /> : null}
      <Card withBorder padding="md">
        <SubmitForm bu={bu} onCreated={select} />
      </Card>
    </Stack>
  );
}

export function FineTuningPage() {
  return (
    <Page
      title="Fine-tuning jobs"
      description="LoRA adapters trained on a business unit's private SDK and the code that uses it, evaluated against the base model on held-out files and registered in the catalog when they beat it."
    >
      <WithBu>{(bu) => <FineTuningOfBu bu={bu} />}</WithBu>
    </Page>
  );
}
