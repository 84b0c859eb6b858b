// The business unit a page works on lives in the URL (?bu=<id>), so links and reloads keep it.
import { NativeSelect } from '@mantine/core';
import { useEffect, type ReactNode } from 'react';
import { useSearchParams } from 'react-router-dom';
import type { BusinessUnit } from '../api/client';
import { buLabel, useBusinessUnits } from '../api/queries';
import { EmptyState, ErrorState, LoadingState } from './states';

export function useCurrentBuId(): string | null {
  const [params] = useSearchParams();
  return params.get('bu');
}

/** The BU of the URL, defaulting to the first visible BU (written back into the URL). */
export function useCurrentBu() {
  const bus = useBusinessUnits();
  const [params, setParams] = useSearchParams();
  const wanted = params.get('bu');
  const list = bus.data ?? [];
  const current = list.find((b) => b.id === wanted) ?? (wanted ? undefined : list[0]);
  useEffect(() => {
    if (!wanted && list[0]) {
      setParams(
        (prev) => {
          const next = new URLSearchParams(prev);
          next.set('bu', list[0]!.id);
          return next;
        },
        { replace: true },
      );
    }
  }, [wanted, list, setParams]);
  return { bus, current, wanted };
}

export function BuPicker() {
  const { bus, current } = useCurrentBu();
  const [, setParams] = useSearchParams();
  if (!bus.data || bus.data.length === 0) return null;
  return (
    <NativeSelect
      label="Business unit"
      size="xs"
      w={220}
      value={current?.id ?? ''}
      onChange={(event) => {
        const id = event.currentTarget.value;
        setParams((prev) => {
          const next = new URLSearchParams(prev);
          next.set('bu', id);
          return next;
        });
      }}
      data={bus.data.map((b) => ({ value: b.id, label: buLabel(b) }))}
    />
  );
}

/** Renders children with the current BU, or the right loading / error / empty state. */
export function WithBu({ children }: { children: (bu: BusinessUnit) => ReactNode }) {
  const { bus, current, wanted } = useCurrentBu();
  if (bus.isPending) return <LoadingState label="Loading business units…" />;
  if (bus.isError) return <ErrorState error={bus.error} />;
  if (bus.data.length === 0) {
    return (
      <EmptyState title="No business units yet">
        Create one on the Business units page first.
      </EmptyState>
    );
  }
  if (!current) {
    return (
      <EmptyState title="Unknown business unit">
        No business unit you can see has the id {wanted}. Pick one in the header.
      </EmptyState>
    );
  }
  return <>{children(current)}</>;
}
