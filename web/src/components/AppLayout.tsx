import { AppShell, Burger, Button, Group, NavLink, Text, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { Link, Outlet, useLocation, useSearchParams } from 'react-router-dom';
import { useAuth } from '../auth/AuthProvider';
import { BuPicker } from './CurrentBu';

export const NAV_ITEMS = [
  { path: '/overview', label: 'Overview' },
  { path: '/model-versions', label: 'Model versions' },
  { path: '/business-units', label: 'Business units' },
  { path: '/members', label: 'Members & roles' },
  { path: '/api-keys', label: 'API keys' },
  { path: '/deployments', label: 'Models & deployments' },
  { path: '/fine-tuning', label: 'Fine-tuning jobs' },
  { path: '/policies', label: 'Policies' },
  { path: '/audit', label: 'Audit log' },
  { path: '/prompt-logs', label: 'Prompt logs' },
] as const;

export function AppLayout() {
  const [opened, { toggle, close }] = useDisclosure();
  const { session, signOut } = useAuth();
  const location = useLocation();
  const [params] = useSearchParams();
  const bu = params.get('bu');
  const suffix = bu ? `?bu=${encodeURIComponent(bu)}` : '';

  return (
    <AppShell
      header={{ height: 64 }}
      navbar={{ width: 240, breakpoint: 'sm', collapsed: { mobile: !opened } }}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger
              opened={opened}
              onClick={toggle}
              hiddenFrom="sm"
              size="sm"
              aria-label="Toggle navigation"
            />
            <Title order={2} size="h4">
              Cove
            </Title>
            <Text c="dimmed" size="sm" visibleFrom="sm">
              admin console
            </Text>
          </Group>
          <Group gap="md" wrap="nowrap" align="flex-end">
            <BuPicker />
            <Text size="sm" c="dimmed" visibleFrom="md" pb={6}>
              {session?.label}
            </Text>
            <Button variant="default" size="xs" onClick={() => signOut('You signed out.')} mb={2}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" component="nav" aria-label="Main">
        {NAV_ITEMS.map((item) => (
          <NavLink
            key={item.path}
            component={Link}
            to={item.path + suffix}
            label={item.label}
            active={location.pathname.startsWith(item.path)}
            aria-current={location.pathname.startsWith(item.path) ? 'page' : undefined}
            onClick={close}
          />
        ))}
      </AppShell.Navbar>
      <AppShell.Main>
        <Outlet />
      </AppShell.Main>
    </AppShell>
  );
}
