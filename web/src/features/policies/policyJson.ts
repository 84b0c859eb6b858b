/** Parses the policy editor's text: a JSON object, or a message saying why not. */
export function parsePolicyText(
  text: string,
): { ok: true; document: Record<string, unknown> } | { ok: false; message: string } {
  let value: unknown;
  try {
    value = JSON.parse(text.trim() === '' ? '{}' : text);
  } catch (error) {
    return { ok: false, message: `Not valid JSON: ${(error as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: 'The policy must be a JSON object, e.g. {"content": {...}}.' };
  }
  return { ok: true, document: value as Record<string, unknown> };
}

export function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
