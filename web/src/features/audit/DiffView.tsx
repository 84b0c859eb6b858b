import { Code, Table, Text } from '@mantine/core';
import { diffRows, display, type AuditEntry } from './audit';

/** What one audited change did, field by field. */
export function DiffView({ diff, label }: { diff: AuditEntry['diff']; label: string }) {
  const rows = diffRows(diff);
  if (rows.length === 0) {
    return (
      <Text size="sm" c="dimmed">
        No field changed.
      </Text>
    );
  }
  return (
    <Table withTableBorder aria-label={label}>
      <Table.Thead>
        <Table.Tr>
          <Table.Th scope="col">Field</Table.Th>
          <Table.Th scope="col">Before</Table.Th>
          <Table.Th scope="col">After</Table.Th>
        </Table.Tr>
      </Table.Thead>
      <Table.Tbody>
        {rows.map(([field, before, after]) => (
          <Table.Tr key={field}>
            <Table.Th scope="row">
              <Code>{field}</Code>
            </Table.Th>
            <Table.Td bg="red.0">
              <del aria-label={`before: ${display(before)}`} style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>
                {display(before)}
              </del>
            </Table.Td>
            <Table.Td bg="green.0">
              <ins aria-label={`after: ${display(after)}`} style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>
                {display(after)}
              </ins>
            </Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  );
}
