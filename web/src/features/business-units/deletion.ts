// Staged deletion of a business unit, as the console does it: download the export first (the
// API refuses a deletion without a recent one), then ask for the deletion.
import { api, call, type BusinessUnit, type Schemas } from '../../api/client';

export type DeletionRequest = Schemas['DeletionRequest'];

/** The archive's file name from Content-Disposition, else one made from the slug. */
export function exportFileName(disposition: string | null, slug: string): string {
  const match = disposition ? /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition) : null;
  return match?.[1] ? decodeURIComponent(match[1]) : `cove-bu-${slug}.tar.gz`;
}

/** Downloads the BU's export archive and hands it to the browser to save; returns its name. */
export async function downloadExport(bu: BusinessUnit): Promise<string> {
  const path = `/api/v1/bus/${bu.id}/export`;
  let disposition: string | null = null;
  const blob = await call(
    api
      .GET('/api/v1/bus/{bu_id}/export', {
        params: { path: { bu_id: bu.id } },
        parseAs: 'blob',
      })
      .then((result) => {
        disposition = result.response.headers.get('content-disposition');
        return result;
      }),
    path,
  );
  const name = exportFileName(disposition, bu.slug);
  const url = URL.createObjectURL(blob as Blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
  return name;
}

export function requestDeletion(bu: BusinessUnit, body: DeletionRequest): Promise<BusinessUnit> {
  return call(
    api.POST('/api/v1/bus/{bu_id}/deletion', { params: { path: { bu_id: bu.id } }, body }),
    `/api/v1/bus/${bu.id}/deletion`,
  );
}

export function restoreBu(bu: BusinessUnit): Promise<BusinessUnit> {
  return call(
    api.POST('/api/v1/bus/{bu_id}/restore', { params: { path: { bu_id: bu.id } } }),
    `/api/v1/bus/${bu.id}/restore`,
  );
}
