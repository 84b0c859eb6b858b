import { useQuery } from '@tanstack/react-query';
import { api, call, type BusinessUnit } from './client';

export const queryKeys = {
  bus: ['bus'] as const,
  keys: (buId: string) => ['bus', buId, 'api-keys'] as const,
  deployments: (buId: string) => ['bus', buId, 'deployments'] as const,
  policy: (buId: string) => ['bus', buId, 'policy'] as const,
  orgPolicy: ['policy'] as const,
  metrics: (buId: string, query: Record<string, string>) => ['bus', buId, 'metrics', query] as const,
};

export function useBusinessUnits() {
  return useQuery({
    queryKey: queryKeys.bus,
    queryFn: () => call(api.GET('/api/v1/bus'), '/api/v1/bus'),
  });
}

export function useDeployments(buId: string | null) {
  return useQuery({
    queryKey: queryKeys.deployments(buId ?? ''),
    enabled: buId !== null,
    queryFn: () =>
      call(
        api.GET('/api/v1/bus/{bu_id}/deployments', { params: { path: { bu_id: buId! } } }),
        `/api/v1/bus/${buId}/deployments`,
      ),
  });
}

export function buLabel(bu: BusinessUnit): string {
  return bu.name === bu.slug ? bu.slug : `${bu.name} (${bu.slug})`;
}

export function useBuModels(buId: string) {
  return useQuery({
    queryKey: ['bus', buId, 'models'],
    queryFn: () =>
      call(api.GET('/api/v1/bus/{bu_id}/models', { params: { path: { bu_id: buId } } }), `/api/v1/bus/${buId}/models`),
  });
}

export function useRelease(buId: string) {
  return useQuery({
    queryKey: ['bus', buId, 'release'],
    queryFn: () =>
      call(api.GET('/api/v1/bus/{bu_id}/release', { params: { path: { bu_id: buId } } }), `/api/v1/bus/${buId}/release`),
  });
}
