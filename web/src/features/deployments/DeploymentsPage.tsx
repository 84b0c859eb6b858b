import {
  Badge,
  Button,
  Card,
  Code,
  Group,
  List,
  NativeSelect,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, call, type BusinessUnit, type Deployment, type Schemas } from '../../api/client';
import { useBuModels, useDeployments } from '../../api/queries';
import { WithBu } from '../../components/CurrentBu';
import { FormError, fieldError } from '../../components/FormError';
import { MetricStat } from '../../components/MetricStat';
import { Page } from '../../components/Page';
import { EmptyState, ErrorState, LoadingState, QueryState } from '../../components/states';
import { formatCount, formatDateTime } from '../../lib/format';

type Runtime = Schemas['DeploymentCreate']['runtime'];
type Mode = Schemas['DeploymentCreate']['mode'];

const STATUS_COLOR: Record<Deployment['status'], string> = {
  ready: 'green',
  pending: 'blue',
  degraded: 'orange',
  unavailable: 'red',
};

const ADAPTER_COLOR: Record<Schemas['DeploymentAdapter']['state'], string> = {
  loaded: 'green',
  pending: 'blue',
  failed: 'red',
  unloading: 'gray',
};

function CapacitySummary({ bu }: { bu: BusinessUnit }) {
  const capacity = useQuery({
    queryKey: ['bus', bu.id, 'capacity'],
    queryFn: () =>
      call(api.GET('/api/v1/bus/{bu_id}/capacity', { params: { path: { bu_id: bu.id } } }), `/api/v1/bus/${bu.id}/capacity`),
  });
  if (capacity.isPending) return <LoadingState label="Loading capacity…" />;
  if (capacity.isError) return <ErrorState error={capacity.error} title="Could not load the capacity" />;
  const c = capacity.data;
  return (
    <SimpleGrid cols={{ base: 1, sm: 3 }} spacing="sm">
      <MetricStat label="GPUs in use" value={`${formatCount(c.gpus_in_use)} of ${formatCount(c.gpu_quota)}`} detail={`${formatCount(c.gpus_available)} available under the quota`} />
      <MetricStat
        label="Managed instances"
        value={`${formatCount(c.managed_instances)} of ${formatCount(c.max_model_instances)}`}
        detail="Deployments Cove runs (local or Kubernetes)"
      />
      <MetricStat
        label="Replicas ready"
        value={formatCount(c.deployments.reduce((n, d) => n + d.replicas_ready, 0))}
        detail={`of ${formatCount(c.deployments.reduce((n, d) => n + d.replicas, 0))} requested`}
      />
    </SimpleGrid>
  );
}

function RegisterForm({ bu }: { bu: BusinessUnit }) {
  const client = useQueryClient();
  const models = useBuModels(bu.id);
  const empty = {
    name: '',
    model: '',
    served_model_name: '',
    endpoint_url: '',
    runtime: 'external' as Runtime,
    mode: 'dedicated' as Mode,
  };
  const [form, setForm] = useState(empty);
  const bases = (models.data ?? []).filter((m) => m.kind === 'base').map((m) => m.name);
  const register = useMutation({
    mutationFn: () =>
      call(
        api.POST('/api/v1/bus/{bu_id}/deployments', {
          params: { path: { bu_id: bu.id } },
          body: {
            name: form.name.trim(),
            model: form.model.trim(),
            served_model_name: form.served_model_name.trim() || null,
            endpoint_url: form.runtime === 'external' ? form.endpoint_url.trim() || null : null,
            runtime: form.runtime,
            mode: form.mode,
          },
        }),
        `/api/v1/bus/${bu.id}/deployments`,
      ),
    onSuccess: async (created) => {
      setForm(empty);
      await client.invalidateQueries({ queryKey: ['bus', bu.id] });
      notifications.show({ color: 'green', message: `Deployment ${created.name} registered` });
    },
  });
  const err = register.error;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    register.mutate();
  };
  return (
    <form onSubmit={submit} aria-labelledby="register-heading">
      <Stack gap="sm" maw={640}>
        <Title order={2} size="h4" id="register-heading">
          Deploy a model
        </Title>
        <Text size="sm" c="dimmed">
          External: register an OpenAI-compatible server you run. Local or Kubernetes: Cove starts
          vLLM for {bu.slug} and reconciles it.
        </Text>
        <TextInput
          label="Deployment name"
          description="Lower-case letters, digits and dashes"
          value={form.name}
          onChange={(e) => setForm({ ...form, name: e.currentTarget.value })}
          error={fieldError(err, 'name')}
          required
        />
        <TextInput
          label="Catalog model"
          description={bases.length > 0 ? `Base models granted to ${bu.slug}: ${bases.join(', ')}` : 'Name of a base model in the catalog'}
          value={form.model}
          onChange={(e) => setForm({ ...form, model: e.currentTarget.value })}
          error={fieldError(err, 'model')}
          required
        />
        <Group grow>
          <NativeSelect
            label="Runtime"
            value={form.runtime}
            onChange={(e) => setForm({ ...form, runtime: e.currentTarget.value as Runtime })}
            data={[
              { value: 'external', label: 'external (a server you run)' },
              { value: 'local', label: 'local (vLLM on the worker machine)' },
              { value: 'kubernetes', label: 'kubernetes (vLLM in the BU namespace)' },
            ]}
          />
          <NativeSelect
            label="Mode"
            value={form.mode}
            onChange={(e) => setForm({ ...form, mode: e.currentTarget.value as Mode })}
            data={[
              { value: 'dedicated', label: 'dedicated' },
              { value: 'shared', label: 'shared (multi-LoRA)' },
            ]}
          />
        </Group>
        <TextInput
          label="Served model name"
          description="The name the instance serves; defaults to the catalog name"
          value={form.served_model_name}
          onChange={(e) => setForm({ ...form, served_model_name: e.currentTarget.value })}
          error={fieldError(err, 'served_model_name')}
        />
        {form.runtime === 'external' ? (
          <TextInput
            label="Endpoint URL"
            placeholder="http://vllm-payments:8000"
            value={form.endpoint_url}
            onChange={(e) => setForm({ ...form, endpoint_url: e.currentTarget.value })}
            error={fieldError(err, 'endpoint_url')}
            required
          />
        ) : null}
        <FormError error={err} />
        <Group>
          <Button type="submit" loading={register.isPending}>
            Register deployment
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function Catalog({ bu }: { bu: BusinessUnit }) {
  const models = useBuModels(bu.id);
  return (
    <section aria-labelledby="catalog-heading">
      <Stack gap="xs">
        <Title order={2} size="h4" id="catalog-heading">
          Models available to {bu.slug}
        </Title>
        <QueryState
          query={models}
          loading="Loading the model catalog…"
          isEmpty={(list) => list.length === 0}
          empty={<EmptyState title="No models granted">A platform admin grants base models to business units.</EmptyState>}
        >
          {(list) => (
            <Table withTableBorder striped aria-label="Models">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th scope="col">Name</Table.Th>
                  <Table.Th scope="col">Kind</Table.Th>
                  <Table.Th scope="col">Base</Table.Th>
                  <Table.Th scope="col">LoRA rank</Table.Th>
                  <Table.Th scope="col">Context</Table.Th>
                  <Table.Th scope="col">Scores</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {list.map((m) => (
                  <Table.Tr key={m.id}>
                    <Table.Th scope="row">{m.name}</Table.Th>
                    <Table.Td>
                      <Badge variant="light" color={m.kind === 'adapter' ? 'grape' : 'blue'}>
                        {m.kind}
                      </Badge>
                    </Table.Td>
                    <Table.Td>{m.base_model ?? '—'}</Table.Td>
                    <Table.Td>{m.lora_rank ?? '—'}</Table.Td>
                    <Table.Td>{m.context_length ?? '—'}</Table.Td>
                    <Table.Td>
                      {Object.keys(m.scores ?? {}).length > 0 ? <Code>{JSON.stringify(m.scores)}</Code> : '—'}
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          )}
        </QueryState>
      </Stack>
    </section>
  );
}

function DeploymentsOfBu({ bu }: { bu: BusinessUnit }) {
  const deployments = useDeployments(bu.id);
  return (
    <Stack gap="lg">
      <CapacitySummary bu={bu} />
      <section aria-labelledby="deployments-heading">
        <Stack gap="xs">
          <Title order={2} size="h4" id="deployments-heading">
            Deployments of {bu.slug}
          </Title>
          <QueryState
            query={deployments}
            loading="Loading deployments…"
            isEmpty={(list) => list.length === 0}
            empty={
              <EmptyState title="No models deployed">
                The gateway answers 503 no_deployment for this business unit until a model is
                deployed below.
              </EmptyState>
            }
          >
            {(list) => (
              <Table.ScrollContainer minWidth={1000}>
                <Table striped withTableBorder aria-label="Deployments">
                  <Table.Thead>
                    <Table.Tr>
                      <Table.Th scope="col">Name</Table.Th>
                      <Table.Th scope="col">Model</Table.Th>
                      <Table.Th scope="col">Runtime / mode</Table.Th>
                      <Table.Th scope="col">Status</Table.Th>
                      <Table.Th scope="col">Replicas ready</Table.Th>
                      <Table.Th scope="col">GPUs</Table.Th>
                      <Table.Th scope="col">Adapters</Table.Th>
                      <Table.Th scope="col">Endpoint</Table.Th>
                      <Table.Th scope="col">Last checked</Table.Th>
                    </Table.Tr>
                  </Table.Thead>
                  <Table.Tbody>
                    {list.map((d) => (
                      <Table.Tr key={d.id}>
                        <Table.Th scope="row">{d.name}</Table.Th>
                        <Table.Td>
                          {d.model}
                          {d.served_model_name !== d.model ? (
                            <Text size="xs" c="dimmed">
                              served as <Code>{d.served_model_name}</Code>
                            </Text>
                          ) : null}
                        </Table.Td>
                        <Table.Td>
                          {d.runtime} / {d.mode}
                          {d.fallback_deployment ? (
                            <Text size="xs" c="dimmed">
                              fallback {d.fallback_deployment}
                            </Text>
                          ) : null}
                        </Table.Td>
                        <Table.Td>
                          <Badge color={STATUS_COLOR[d.status] ?? 'gray'} variant="light">
                            {d.status}
                          </Badge>
                          {d.status_detail ? (
                            <Text size="xs" c="dimmed">
                              {d.status_detail}
                            </Text>
                          ) : null}
                        </Table.Td>
                        <Table.Td>
                          {d.replicas_ready} / {d.spec.replicas}
                        </Table.Td>
                        <Table.Td>{d.gpus}</Table.Td>
                        <Table.Td>
                          {d.adapters.length === 0 ? (
                            '—'
                          ) : (
                            <List size="xs" spacing={2}>
                              {d.adapters.map((a) => (
                                <List.Item key={a.model_id}>
                                  {a.model}{' '}
                                  <Badge size="xs" variant="light" color={ADAPTER_COLOR[a.state] ?? 'gray'}>
                                    {a.state}
                                  </Badge>
                                </List.Item>
                              ))}
                            </List>
                          )}
                        </Table.Td>
                        <Table.Td>
                          <Code>{d.endpoint_url || '—'}</Code>
                        </Table.Td>
                        <Table.Td>{formatDateTime(d.last_checked_at)}</Table.Td>
                      </Table.Tr>
                    ))}
                  </Table.Tbody>
                </Table>
              </Table.ScrollContainer>
            )}
          </QueryState>
        </Stack>
      </section>
      <Catalog bu={bu} />
      <Card withBorder padding="md">
        <RegisterForm bu={bu} />
      </Card>
    </Stack>
  );
}

export function DeploymentsPage() {
  return (
    <Page
      title="Models & deployments"
      description="The model instances that serve each business unit: status, capacity, loaded LoRA adapters, and the models it may deploy."
    >
      <WithBu>{(bu) => <DeploymentsOfBu bu={bu} />}</WithBu>
    </Page>
  );
}
