import { Code, List, Stack, Text } from '@mantine/core';
import { WithBu } from '../../components/CurrentBu';
import { Page } from '../../components/Page';
import { NotAvailableState } from '../../components/states';

export const ROLES = [
  { role: 'platform-admin', what: 'creates business units, sets quotas and the organisation policy, reads the audit log' },
  { role: 'bu-admin', what: "manages the BU's members, keys, models, fine-tuning and policy" },
  { role: 'developer', what: 'uses completions and chat through the gateway' },
  { role: 'viewer', what: "reads the BU's dashboards" },
];

export function MembersPage() {
  return (
    <Page
      title="Members & roles"
      description="Members and their roles come from Keycloak groups (e.g. /cove/<bu>/developers); the console shows them read-only."
    >
      <WithBu>
        {(bu) => (
          <Stack gap="md">
            <NotAvailableState
              title="Member list not available yet"
              endpoint={`GET /api/v1/bus/{bu_id}/members`}
            >
              The identity API that lists the members of {bu.slug} from Keycloak has not landed;
              manage membership in Keycloak until then.
            </NotAvailableState>
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
