import {
  Alert,
  Badge,
  Button,
  Checkbox,
  Code,
  CopyButton,
  Group,
  Modal,
  NumberInput,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import {
  api,
  call,
  type ApiKey,
  type ApiKeyCreated,
  type BusinessUnit,
  type Scope,
} from '../../api/client';
import { queryKeys } from '../../api/queries';
import { WithBu } from '../../components/CurrentBu';
import { FormError, fieldError } from '../../components/FormError';
import { Page } from '../../components/Page';
import { EmptyState, QueryState } from '../../components/states';
import { formatDateTime } from '../../lib/format';

const SCOPES: { value: Scope; label: string }[] = [
  { value: 'completions', label: 'completions — IDE completions and chat through the gateway' },
  { value: 'events', label: 'events — send IDE usage events' },
  { value: 'admin:read', label: 'admin:read — read the admin API' },
  { value: 'admin:write', label: 'admin:write — change things through the admin API' },
];

export function keyStatus(key: ApiKey, now: Date = new Date()): 'active' | 'revoked' | 'expired' {
  if (key.revoked_at) return 'revoked';
  if (key.expires_at && new Date(key.expires_at) <= now) return 'expired';
  return 'active';
}

function CreateKeyForm({ bu, onCreated }: { bu: BusinessUnit; onCreated: (k: ApiKeyCreated) => void }) {
  const client = useQueryClient();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['completions', 'events']);
  const [expires, setExpires] = useState<number | string>('');
  const create = useMutation({
    mutationFn: () =>
      call(
        api.POST('/api/v1/bus/{bu_id}/api-keys', {
          params: { path: { bu_id: bu.id } },
          body: {
            name: name.trim(),
            scopes: scopes as Scope[],
            expires_in_days: expires === '' ? null : Number(expires),
          },
        }),
        `/api/v1/bus/${bu.id}/api-keys`,
      ),
    onSuccess: async (created) => {
      setName('');
      await client.invalidateQueries({ queryKey: queryKeys.keys(bu.id) });
      onCreated(created);
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate();
  };
  return (
    <form onSubmit={submit} aria-labelledby="create-key-heading">
      <Stack gap="sm" maw={640}>
        <Title order={2} size="h4" id="create-key-heading">
          Create an API key
        </Title>
        <TextInput
          label="Key name"
          description="What uses it, e.g. 'ci-bot' or 'alice laptop'"
          value={name}
          onChange={(e) => setName(e.currentTarget.value)}
          error={fieldError(create.error, 'name')}
          required
        />
        <Checkbox.Group
          label="Scopes"
          value={scopes}
          onChange={setScopes}
          error={fieldError(create.error, 'scopes')}
        >
          <Stack gap={4} mt={4}>
            {SCOPES.map((s) => (
              <Checkbox key={s.value} value={s.value} label={s.label} />
            ))}
          </Stack>
        </Checkbox.Group>
        <NumberInput
          label="Expires in (days)"
          description="Empty: never expires"
          min={1}
          max={3650}
          value={expires}
          onChange={setExpires}
          error={fieldError(create.error, 'expires_in_days')}
          w={220}
        />
        <FormError error={create.error} />
        <Group>
          <Button type="submit" loading={create.isPending}>
            Create key
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function NewKeyDialog({ created, onClose }: { created: ApiKeyCreated | null; onClose: () => void }) {
  return (
    <Modal
      opened={created !== null}
      onClose={onClose}
      title="Your new API key"
      closeOnClickOutside={false}
      size="lg"
    >
      {created ? (
        <Stack gap="sm">
          <Alert color="yellow" variant="light" role="status">
            This is the only time the key is shown. Cove keeps only a salted hash of it: copy it
            now.
          </Alert>
          <Text size="sm">
            Key <b>{created.name}</b> (id <Code>{created.key_id}</Code>), scopes{' '}
            {created.scopes.join(', ')}.
          </Text>
          <Code block aria-label="New API key" data-testid="new-api-key">
            {created.key}
          </Code>
          <Group justify="space-between">
            <CopyButton value={created.key}>
              {({ copied, copy }) => (
                <Button color={copied ? 'teal' : 'blue'} onClick={copy}>
                  {copied ? 'Copied' : 'Copy key'}
                </Button>
              )}
            </CopyButton>
            <Button variant="default" onClick={onClose}>
              I have stored the key
            </Button>
          </Group>
        </Stack>
      ) : null}
    </Modal>
  );
}

function RevokeDialog({
  bu,
  target,
  onClose,
}: {
  bu: BusinessUnit;
  target: ApiKey | null;
  onClose: () => void;
}) {
  const client = useQueryClient();
  const revoke = useMutation({
    mutationFn: (key: ApiKey) =>
      call(
        api.DELETE('/api/v1/bus/{bu_id}/api-keys/{key_id}', {
          params: { path: { bu_id: bu.id, key_id: key.id } },
        }),
        `/api/v1/bus/${bu.id}/api-keys/${key.id}`,
      ),
    onSuccess: async (_, key) => {
      await client.invalidateQueries({ queryKey: queryKeys.keys(bu.id) });
      notifications.show({ color: 'green', message: `Key ${key.name} revoked` });
      onClose();
    },
  });
  return (
    <Modal
      opened={target !== null}
      onClose={() => {
        revoke.reset();
        onClose();
      }}
      title={target ? `Revoke ${target.name}?` : ''}
    >
      {target ? (
        <Stack gap="sm">
          <Text size="sm">
            Every gateway stops accepting <Code>{target.key_id}</Code> at once. Clients using it
            get 401 until they are given a new key. This cannot be undone.
          </Text>
          <FormError error={revoke.error} />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button color="red" loading={revoke.isPending} onClick={() => revoke.mutate(target)}>
              Revoke key
            </Button>
          </Group>
        </Stack>
      ) : null}
    </Modal>
  );
}

function KeysOfBu({ bu }: { bu: BusinessUnit }) {
  const keys = useQuery({
    queryKey: queryKeys.keys(bu.id),
    queryFn: () =>
      call(
        api.GET('/api/v1/bus/{bu_id}/api-keys', { params: { path: { bu_id: bu.id } } }),
        `/api/v1/bus/${bu.id}/api-keys`,
      ),
  });
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  return (
    <Stack gap="lg">
      <section aria-labelledby="keys-heading">
        <Stack gap="xs">
          <Title order={2} size="h4" id="keys-heading">
            Keys of {bu.slug}
          </Title>
          <QueryState
            query={keys}
            loading="Loading API keys…"
            isEmpty={(list) => list.length === 0}
            empty={<EmptyState title="No API keys yet">Create one below.</EmptyState>}
          >
            {(list) => (
              <Table.ScrollContainer minWidth={800}>
                <Table striped withTableBorder aria-label="API keys">
                  <Table.Thead>
                    <Table.Tr>
                      <Table.Th scope="col">Name</Table.Th>
                      <Table.Th scope="col">Key id</Table.Th>
                      <Table.Th scope="col">Scopes</Table.Th>
                      <Table.Th scope="col">Status</Table.Th>
                      <Table.Th scope="col">Created</Table.Th>
                      <Table.Th scope="col">Expires</Table.Th>
                      <Table.Th scope="col">Last used</Table.Th>
                      <Table.Th scope="col">Actions</Table.Th>
                    </Table.Tr>
                  </Table.Thead>
                  <Table.Tbody>
                    {list.map((key) => {
                      const status = keyStatus(key);
                      return (
                        <Table.Tr key={key.id}>
                          <Table.Th scope="row">{key.name}</Table.Th>
                          <Table.Td>
                            <Code>{key.key_id}</Code>
                          </Table.Td>
                          <Table.Td>{key.scopes.join(', ')}</Table.Td>
                          <Table.Td>
                            <Badge
                              variant="light"
                              color={status === 'active' ? 'green' : status === 'revoked' ? 'red' : 'gray'}
                            >
                              {status}
                            </Badge>
                          </Table.Td>
                          <Table.Td>{formatDateTime(key.created_at)}</Table.Td>
                          <Table.Td>{key.expires_at ? formatDateTime(key.expires_at) : 'never'}</Table.Td>
                          <Table.Td>{key.last_used_at ? formatDateTime(key.last_used_at) : 'never'}</Table.Td>
                          <Table.Td>
                            <Button
                              size="xs"
                              variant="light"
                              color="red"
                              disabled={status !== 'active'}
                              aria-label={`Revoke ${key.name}`}
                              onClick={() => setRevoking(key)}
                            >
                              Revoke
                            </Button>
                          </Table.Td>
                        </Table.Tr>
                      );
                    })}
                  </Table.Tbody>
                </Table>
              </Table.ScrollContainer>
            )}
          </QueryState>
        </Stack>
      </section>
      <CreateKeyForm bu={bu} onCreated={setCreated} />
      <NewKeyDialog created={created} onClose={() => setCreated(null)} />
      <RevokeDialog bu={bu} target={revoking} onClose={() => setRevoking(null)} />
    </Stack>
  );
}

export function ApiKeysPage() {
  return (
    <Page
      title="API keys"
      description="Keys for IDE clients, CI and scripts. A new key is shown once; Cove stores only a salted hash."
    >
      <WithBu>{(bu) => <KeysOfBu bu={bu} />}</WithBu>
    </Page>
  );
}
