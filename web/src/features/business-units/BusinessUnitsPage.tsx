import {
  Badge,
  Button,
  Group,
  Modal,
  NativeSelect,
  NumberInput,
  Stack,
  Table,
  Text,
  TextInput,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, call, type BusinessUnit, type Schemas } from '../../api/client';
import { queryKeys, useBusinessUnits } from '../../api/queries';
import { FormError, fieldError } from '../../components/FormError';
import { Page } from '../../components/Page';
import { EmptyState, QueryState } from '../../components/states';
import { formatCount, formatDateTime } from '../../lib/format';
import { downloadExport, requestDeletion, restoreBu } from './deletion';

type Create = Schemas['BusinessUnitCreate'];
type Update = Schemas['BusinessUnitUpdate'];
const LOGGING = ['off', 'metadata', 'full'] as const;

function numberOrNull(value: string | number): number | null {
  if (value === '' || value === null) return null;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

function CreateBuForm({ onDone }: { onDone: (bu: BusinessUnit) => void }) {
  const client = useQueryClient();
  const [form, setForm] = useState({
    slug: '',
    name: '',
    gpu_quota: 0 as number | string,
    max_model_instances: 2 as number | string,
    tokens_per_day: '' as number | string,
    prompt_logging: 'off' as Create['prompt_logging'],
    retention_days: 90 as number | string,
  });
  const create = useMutation({
    mutationFn: (body: Create) => call(api.POST('/api/v1/bus', { body }), '/api/v1/bus'),
    onSuccess: async (bu) => {
      await client.invalidateQueries({ queryKey: queryKeys.bus });
      notifications.show({ color: 'green', message: `Business unit ${bu.slug} created` });
      onDone(bu);
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({
      slug: form.slug.trim(),
      name: form.name.trim(),
      gpu_quota: numberOrNull(form.gpu_quota) ?? 0,
      max_model_instances: numberOrNull(form.max_model_instances) ?? 0,
      tokens_per_day: numberOrNull(form.tokens_per_day),
      prompt_logging: form.prompt_logging,
      retention_days: numberOrNull(form.retention_days) ?? 90,
    });
  };
  const err = create.error;
  return (
    <form onSubmit={submit} aria-label="Create business unit">
      <Stack gap="sm">
        <TextInput
          label="Slug"
          description="Lower-case letters, digits and dashes; used in URLs and Keycloak groups"
          value={form.slug}
          onChange={(e) => setForm({ ...form, slug: e.currentTarget.value })}
          error={fieldError(err, 'slug')}
          required
          data-autofocus
        />
        <TextInput
          label="Name"
          value={form.name}
          onChange={(e) => setForm({ ...form, name: e.currentTarget.value })}
          error={fieldError(err, 'name')}
          required
        />
        <Group grow>
          <NumberInput
            label="GPU quota"
            min={0}
            value={form.gpu_quota}
            onChange={(v) => setForm({ ...form, gpu_quota: v })}
            error={fieldError(err, 'gpu_quota')}
          />
          <NumberInput
            label="Max model instances"
            min={0}
            value={form.max_model_instances}
            onChange={(v) => setForm({ ...form, max_model_instances: v })}
            error={fieldError(err, 'max_model_instances')}
          />
        </Group>
        <Group grow>
          <NumberInput
            label="Tokens per day"
            description="Empty: unlimited"
            min={1}
            value={form.tokens_per_day}
            onChange={(v) => setForm({ ...form, tokens_per_day: v })}
            error={fieldError(err, 'tokens_per_day')}
          />
          <NumberInput
            label="Event retention (days)"
            min={1}
            value={form.retention_days}
            onChange={(v) => setForm({ ...form, retention_days: v })}
            error={fieldError(err, 'retention_days')}
          />
        </Group>
        <NativeSelect
          label="Prompt logging"
          value={form.prompt_logging}
          onChange={(e) =>
            setForm({ ...form, prompt_logging: e.currentTarget.value as Create['prompt_logging'] })
          }
          data={[...LOGGING]}
        />
        <FormError error={err} />
        <Group justify="flex-end">
          <Button type="submit" loading={create.isPending}>
            Create business unit
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function EditQuotasForm({ bu, onDone }: { bu: BusinessUnit; onDone: () => void }) {
  const client = useQueryClient();
  const [form, setForm] = useState({
    name: bu.name,
    gpu_quota: bu.gpu_quota as number | string,
    max_model_instances: bu.max_model_instances as number | string,
    tokens_per_day: (bu.tokens_per_day ?? '') as number | string,
    retention_days: bu.retention_days as number | string,
    prompt_logging: bu.prompt_logging,
  });
  const update = useMutation({
    mutationFn: (body: Update) =>
      call(
        api.PATCH('/api/v1/bus/{bu_id}', { params: { path: { bu_id: bu.id } }, body }),
        `/api/v1/bus/${bu.id}`,
      ),
    onSuccess: async (saved) => {
      await client.invalidateQueries({ queryKey: queryKeys.bus });
      notifications.show({ color: 'green', message: `Saved ${saved.slug}` });
      onDone();
    },
  });
  const err = update.error;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const body: Update = {
      name: form.name.trim(),
      gpu_quota: numberOrNull(form.gpu_quota),
      max_model_instances: numberOrNull(form.max_model_instances),
      retention_days: numberOrNull(form.retention_days),
      prompt_logging: form.prompt_logging,
    };
    const tokens = numberOrNull(form.tokens_per_day);
    // PATCH leaves absent fields alone; the API has no "unlimited again" value yet.
    if (tokens !== null) body.tokens_per_day = tokens;
    update.mutate(body);
  };
  return (
    <form onSubmit={submit} aria-label={`Edit ${bu.slug}`}>
      <Stack gap="sm">
        <TextInput
          label="Name"
          value={form.name}
          onChange={(e) => setForm({ ...form, name: e.currentTarget.value })}
          error={fieldError(err, 'name')}
          data-autofocus
        />
        <Group grow>
          <NumberInput
            label="GPU quota"
            min={0}
            value={form.gpu_quota}
            onChange={(v) => setForm({ ...form, gpu_quota: v })}
            error={fieldError(err, 'gpu_quota')}
          />
          <NumberInput
            label="Max model instances"
            min={0}
            value={form.max_model_instances}
            onChange={(v) => setForm({ ...form, max_model_instances: v })}
            error={fieldError(err, 'max_model_instances')}
          />
        </Group>
        <Group grow>
          <NumberInput
            label="Tokens per day"
            min={1}
            value={form.tokens_per_day}
            onChange={(v) => setForm({ ...form, tokens_per_day: v })}
            error={fieldError(err, 'tokens_per_day')}
          />
          <NumberInput
            label="Event retention (days)"
            min={1}
            value={form.retention_days}
            onChange={(v) => setForm({ ...form, retention_days: v })}
            error={fieldError(err, 'retention_days')}
          />
        </Group>
        <NativeSelect
          label="Prompt logging"
          value={form.prompt_logging}
          onChange={(e) =>
            setForm({
              ...form,
              prompt_logging: e.currentTarget.value as BusinessUnit['prompt_logging'],
            })
          }
          data={[...LOGGING]}
        />
        <FormError error={err} />
        <Group justify="flex-end">
          <Button type="submit" loading={update.isPending}>
            Save
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function StatusChange({ bu, onDone }: { bu: BusinessUnit; onDone: () => void }) {
  const client = useQueryClient();
  const target = bu.status === 'suspended' ? 'active' : 'suspended';
  const change = useMutation({
    mutationFn: () =>
      call(
        api.PATCH('/api/v1/bus/{bu_id}', {
          params: { path: { bu_id: bu.id } },
          body: { status: target },
        }),
        `/api/v1/bus/${bu.id}`,
      ),
    onSuccess: async (saved) => {
      await client.invalidateQueries({ queryKey: queryKeys.bus });
      notifications.show({ message: `${saved.slug} is now ${saved.status}` });
      onDone();
    },
  });
  return (
    <Stack gap="sm">
      <Text size="sm">
        {target === 'suspended'
          ? `Suspend ${bu.slug}? Its developers' requests are refused by the gateway until it is resumed; nothing is deleted.`
          : `Resume ${bu.slug}? Its developers can use the gateway again.`}
      </Text>
      <FormError error={change.error} />
      <Group justify="flex-end">
        <Button variant="default" onClick={onDone}>
          Cancel
        </Button>
        <Button
          color={target === 'suspended' ? 'red' : 'blue'}
          loading={change.isPending}
          onClick={() => change.mutate()}
        >
          {target === 'suspended' ? 'Suspend' : 'Resume'}
        </Button>
      </Group>
    </Stack>
  );
}

function DeleteBu({ bu, onDone }: { bu: BusinessUnit; onDone: () => void }) {
  const client = useQueryClient();
  const [confirm, setConfirm] = useState('');
  const [graceDays, setGraceDays] = useState<number | string>('');
  const [exported, setExported] = useState<string | null>(null);
  const remove = useMutation({
    mutationFn: async () => {
      // The export comes first: the API refuses a deletion without a recent one.
      setExported(await downloadExport(bu));
      return requestDeletion(bu, { grace_days: numberOrNull(graceDays) });
    },
    onSuccess: async (saved) => {
      await client.invalidateQueries({ queryKey: queryKeys.bus });
      notifications.show({
        color: 'orange',
        message: `${saved.slug} will be purged after ${formatDateTime(saved.purge_after)}`,
      });
      onDone();
    },
  });
  return (
    <form
      aria-label={`Delete ${bu.slug}`}
      onSubmit={(event: FormEvent) => {
        event.preventDefault();
        remove.mutate();
      }}
    >
      <Stack gap="sm">
        <Text size="sm">
          {`First an export of ${bu.slug} (configuration and metrics) is downloaded. Then its developers are refused at once, and after the grace period everything of it is purged: events, logged prompts, datasets, adapters, jobs, deployments, keys and members. Until then a platform admin can cancel the deletion.`}
        </Text>
        <NumberInput
          label="Grace period (days)"
          description="Empty: the install's default (7 days). 0 purges at once and cannot be cancelled."
          min={0}
          max={365}
          value={graceDays}
          onChange={setGraceDays}
          error={fieldError(remove.error, 'grace_days')}
        />
        <TextInput
          label={`Type ${bu.slug} to confirm`}
          value={confirm}
          onChange={(e) => setConfirm(e.currentTarget.value)}
          data-autofocus
        />
        {exported ? <Text size="sm">{`Export saved as ${exported}`}</Text> : null}
        <FormError error={remove.error} />
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            Cancel
          </Button>
          <Button
            type="submit"
            color="red"
            disabled={confirm !== bu.slug}
            loading={remove.isPending}
          >
            Export and delete
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function CancelDeletion({ bu, onDone }: { bu: BusinessUnit; onDone: () => void }) {
  const client = useQueryClient();
  const restore = useMutation({
    mutationFn: () => restoreBu(bu),
    onSuccess: async (saved) => {
      await client.invalidateQueries({ queryKey: queryKeys.bus });
      notifications.show({ color: 'green', message: `${saved.slug} is ${saved.status} again` });
      onDone();
    },
  });
  return (
    <Stack gap="sm">
      <Text size="sm">
        {`Cancel the deletion of ${bu.slug}? It gets back the status it had, and nothing is purged.`}
      </Text>
      <FormError error={restore.error} />
      <Group justify="flex-end">
        <Button variant="default" onClick={onDone}>
          Keep deleting
        </Button>
        <Button loading={restore.isPending} onClick={() => restore.mutate()}>
          Cancel deletion
        </Button>
      </Group>
    </Stack>
  );
}

/** Past `purge_after` the purge may be under way: a restore is refused then. */
function graceOver(bu: BusinessUnit): boolean {
  return bu.purge_after != null && Date.parse(bu.purge_after) <= Date.now();
}

const STATUS_COLOR: Record<BusinessUnit['status'], string> = {
  active: 'green',
  suspended: 'orange',
  deleting: 'red',
};

type Dialog =
  | { kind: 'create' }
  | { kind: 'edit' | 'status' | 'delete' | 'restore'; bu: BusinessUnit }
  | null;

export function BusinessUnitsPage() {
  const bus = useBusinessUnits();
  const [dialog, setDialog] = useState<Dialog>(null);
  const close = () => setDialog(null);
  return (
    <Page
      title="Business units"
      description="Each business unit is a tenant with its own models, policies, keys and analytics. Creating, re-sizing, suspending and deleting need a platform admin."
      actions={
        <Group>
          <Button onClick={() => setDialog({ kind: 'create' })}>Create business unit</Button>
        </Group>
      }
    >
      <QueryState
        query={bus}
        loading="Loading business units…"
        isEmpty={(list) => list.length === 0}
        empty={<EmptyState title="No business units yet">Create the first one.</EmptyState>}
      >
        {(list) => (
          <Table.ScrollContainer minWidth={900}>
            <Table striped withTableBorder aria-label="Business units">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th scope="col">Slug</Table.Th>
                  <Table.Th scope="col">Name</Table.Th>
                  <Table.Th scope="col">Status</Table.Th>
                  <Table.Th scope="col">GPU quota</Table.Th>
                  <Table.Th scope="col">Max instances</Table.Th>
                  <Table.Th scope="col">Tokens / day</Table.Th>
                  <Table.Th scope="col">Prompt logging</Table.Th>
                  <Table.Th scope="col">Retention</Table.Th>
                  <Table.Th scope="col">Created</Table.Th>
                  <Table.Th scope="col">Actions</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {list.map((bu) => (
                  <Table.Tr key={bu.id}>
                    <Table.Th scope="row">{bu.slug}</Table.Th>
                    <Table.Td>{bu.name}</Table.Td>
                    <Table.Td>
                      <Badge color={STATUS_COLOR[bu.status]} variant="light">
                        {bu.status}
                      </Badge>
                      {bu.status === 'deleting' ? (
                        <Text size="xs" c="dimmed">
                          {graceOver(bu)
                            ? 'being purged'
                            : `purged after ${formatDateTime(bu.purge_after)}`}
                        </Text>
                      ) : null}
                    </Table.Td>
                    <Table.Td>{formatCount(bu.gpu_quota)}</Table.Td>
                    <Table.Td>{formatCount(bu.max_model_instances)}</Table.Td>
                    <Table.Td>
                      {bu.tokens_per_day === null ? 'unlimited' : formatCount(bu.tokens_per_day)}
                    </Table.Td>
                    <Table.Td>{bu.prompt_logging}</Table.Td>
                    <Table.Td>{bu.retention_days} days</Table.Td>
                    <Table.Td>{formatDateTime(bu.created_at)}</Table.Td>
                    <Table.Td>
                      {bu.status === 'deleting' && graceOver(bu) ? (
                        <Text size="xs" c="dimmed">
                          The grace period is over
                        </Text>
                      ) : bu.status === 'deleting' ? (
                        <Button
                          size="xs"
                          variant="light"
                          aria-label={`Cancel deletion of ${bu.slug}`}
                          onClick={() => setDialog({ kind: 'restore', bu })}
                        >
                          Cancel deletion
                        </Button>
                      ) : (
                      <Group gap={6} wrap="nowrap">
                        <Button
                          size="xs"
                          variant="default"
                          aria-label={`Edit quotas of ${bu.slug}`}
                          onClick={() => setDialog({ kind: 'edit', bu })}
                        >
                          Edit quotas
                        </Button>
                        <Button
                          size="xs"
                          variant="light"
                          color={bu.status === 'suspended' ? 'blue' : 'red'}
                          aria-label={`${bu.status === 'suspended' ? 'Resume' : 'Suspend'} ${bu.slug}`}
                          onClick={() => setDialog({ kind: 'status', bu })}
                        >
                          {bu.status === 'suspended' ? 'Resume' : 'Suspend'}
                        </Button>
                        <Button
                          size="xs"
                          variant="subtle"
                          color="red"
                          aria-label={`Delete ${bu.slug} (with export)`}
                          onClick={() => setDialog({ kind: 'delete', bu })}
                        >
                          Delete (with export)
                        </Button>
                      </Group>
                      )}
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        )}
      </QueryState>
      <Text size="xs" c="dimmed">
        Deleting a business unit downloads an export of it first; it is purged after a grace
        period during which the deletion can be cancelled.
      </Text>
      <Modal opened={dialog?.kind === 'create'} onClose={close} title="Create business unit">
        {dialog?.kind === 'create' ? <CreateBuForm onDone={close} /> : null}
      </Modal>
      <Modal
        opened={dialog?.kind === 'edit'}
        onClose={close}
        title={dialog?.kind === 'edit' ? `Quotas of ${dialog.bu.slug}` : ''}
      >
        {dialog?.kind === 'edit' ? <EditQuotasForm bu={dialog.bu} onDone={close} /> : null}
      </Modal>
      <Modal
        opened={dialog?.kind === 'status'}
        onClose={close}
        title={
          dialog?.kind === 'status'
            ? `${dialog.bu.status === 'suspended' ? 'Resume' : 'Suspend'} ${dialog.bu.slug}`
            : ''
        }
      >
        {dialog?.kind === 'status' ? <StatusChange bu={dialog.bu} onDone={close} /> : null}
      </Modal>
      <Modal
        opened={dialog?.kind === 'delete'}
        onClose={close}
        title={dialog?.kind === 'delete' ? `Delete ${dialog.bu.slug}` : ''}
      >
        {dialog?.kind === 'delete' ? <DeleteBu bu={dialog.bu} onDone={close} /> : null}
      </Modal>
      <Modal
        opened={dialog?.kind === 'restore'}
        onClose={close}
        title={dialog?.kind === 'restore' ? `Cancel deletion of ${dialog.bu.slug}` : ''}
      >
        {dialog?.kind === 'restore' ? <CancelDeletion bu={dialog.bu} onDone={close} /> : null}
      </Modal>
    </Page>
  );
}
