import { Alert, Badge, Code, List, Stack, Table, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { api, call, type BusinessUnit, type Schemas } from '../../api/client';
import { WithBu } from '../../components/CurrentBu';
import { Page } from '../../components/Page';
import { EmptyState, QueryState } from '../../components/states';

type MemberList = Schemas['MemberList'];
type RoleGrant = Schemas['RoleGrant'];

export const ROLES = [
  { role: 'platform-admin', what: 'creates business units, sets quotas and the organisation policy, reads the audit log' },
  { role: 'bu-admin', what: "manages the BU's members, keys, models, fine-tuning and policy" },
  { role: 'developer', what: 'uses completions and chat through the gateway' },
  { role: 'viewer', what: "reads the BU's dashboards" },
];

const ROLE_COLOR: Record<string, string> = {
  'platform-admin': 'grape',
  'bu-admin': 'blue',
  developer: 'teal',
  viewer: 'gray',
};

/** Where a role comes from, in words an admin can act on. */
export function describeGrant(grant: RoleGrant): string {
  switch (grant.source) {
    case 'keycloak-group':
      return `Keycloak group ${grant.via ?? ''}`.trim();
    case 'keycloak-realm-role':
      return `Keycloak realm role ${grant.via ?? ''}`.trim();
    default:
      return grant.role === 'platform-admin' ? 'Cove platform admin' : 'Cove membership';
  }
}

function DirectoryNotice({ list }: { list: MemberList }) {
  if (list.directory === 'connected') return null;
  if (list.directory === 'unavailable') {
    return (
      <Alert color="yellow" variant="light" role="alert" title="Keycloak did not answer">
        Only members recorded in Cove are listed; members who get their role from a Keycloak
        group are missing until Keycloak answers again.
        {list.directory_error ? <Text size="xs" c="dimmed" mt={4}>{list.directory_error}</Text> : null}
      </Alert>
    );
  }
  return (
    <Alert color="blue" variant="light" role="status" title="Keycloak is not connected">
      The platform has no Keycloak Admin API credentials (<Code>COVE_KEYCLOAK_URL</Code>,{' '}
      <Code>COVE_KEYCLOAK_CLIENT_SECRET</Code>), so only members recorded in Cove are listed.
    </Alert>
  );
}

function MembersOfBu({ bu }: { bu: BusinessUnit }) {
  const members = useQuery({
    queryKey: ['bus', bu.id, 'members'],
    queryFn: () =>
      call(
        api.GET('/api/v1/bus/{bu_id}/members', { params: { path: { bu_id: bu.id } } }),
        `/api/v1/bus/${bu.id}/members`,
      ),
  });
  return (
    <section aria-labelledby="members-heading">
      <Stack gap="xs">
        <Title order={2} size="h4" id="members-heading">
          Members of {bu.slug}
        </Title>
        <QueryState query={members} loading="Loading members…">
          {(list) => (
            <Stack gap="sm">
              <DirectoryNotice list={list} />
              {list.members.length === 0 ? (
                <EmptyState title="No members yet">
                  Add people to the Keycloak groups /cove/{bu.slug}/admins, /cove/{bu.slug}/developers
                  or /cove/{bu.slug}/viewers.
                </EmptyState>
              ) : (
                <Table.ScrollContainer minWidth={720}>
                  <Table striped withTableBorder aria-label="Members">
                    <Table.Thead>
                      <Table.Tr>
                        <Table.Th scope="col">Member</Table.Th>
                        <Table.Th scope="col">Email</Table.Th>
                        <Table.Th scope="col">Role</Table.Th>
                        <Table.Th scope="col">Granted by</Table.Th>
                      </Table.Tr>
                    </Table.Thead>
                    <Table.Tbody>
                      {list.members.map((member) => (
                        <Table.Tr key={member.username}>
                          <Table.Th scope="row">{member.username}</Table.Th>
                          <Table.Td>{member.email ?? '—'}</Table.Td>
                          <Table.Td>
                            <Badge color={ROLE_COLOR[member.role] ?? 'gray'} variant="light">
                              {member.role}
                            </Badge>
                          </Table.Td>
                          <Table.Td>
                            <List size="sm" spacing={2} listStyleType="none">
                              {member.roles.map((grant) => (
                                <List.Item key={`${grant.role}-${grant.source}-${grant.via ?? ''}`}>
                                  <Code>{grant.role}</Code> · {describeGrant(grant)}
                                </List.Item>
                              ))}
                            </List>
                          </Table.Td>
                        </Table.Tr>
                      ))}
                    </Table.Tbody>
                  </Table>
                </Table.ScrollContainer>
              )}
            </Stack>
          )}
        </QueryState>
      </Stack>
    </section>
  );
}

export function MembersPage() {
  return (
    <Page
      title="Members & roles"
      description="Roles come from Keycloak groups (/cove/<bu>/admins, developers, viewers), the platform-admin realm role, and memberships recorded in Cove. Change them in Keycloak; the console shows them read-only."
    >
      <WithBu>
        {(bu) => (
          <Stack gap="lg">
            <MembersOfBu bu={bu} />
            <section aria-label="Roles">
              <Text fw={600} mb={4}>
                Roles
              </Text>
              <List spacing={4} size="sm">
                {ROLES.map((r) => (
                  <List.Item key={r.role}>
                    <Code>{r.role}</Code> — {r.what}
                  </List.Item>
                ))}
              </List>
            </section>
          </Stack>
        )}
      </WithBu>
    </Page>
  );
}
