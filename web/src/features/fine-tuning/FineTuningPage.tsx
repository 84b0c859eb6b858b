import { List, Text } from '@mantine/core';
import { Page } from '../../components/Page';
import { EmptyState } from '../../components/states';

export function FineTuningPage() {
  return (
    <Page
      title="Fine-tuning jobs"
      description="LoRA adapters trained on a business unit's private SDKs, evaluated against the base model on held-out code."
    >
      <EmptyState title="Fine-tuning jobs arrive with the fine-tuning issue">
        The platform API has no fine-tuning endpoints yet. When it does, this page lists each
        job with its progress and evaluation results, and registers the adapter as a model
        version to compare on the Model versions page.
      </EmptyState>
      <Text size="sm" fw={600}>
        What a job will show
      </Text>
      <List size="sm" spacing={2}>
        <List.Item>dataset: repositories, FIM examples around SDK call sites, held-out split by file</List.Item>
        <List.Item>training progress and logs of the LoRA run on the BU's base model</List.Item>
        <List.Item>evaluation: adapter vs base on held-out code</List.Item>
      </List>
    </Page>
  );
}
