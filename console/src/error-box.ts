import { ApiError } from './api.js';
import { h } from './dom.js';

/** errorBox: the API's reason for a refusal, as it gave it. */
export function errorBox(e: unknown): HTMLElement {
  if (e instanceof ApiError) return h('p', { class: 'error', role: 'alert' }, `${e.status ? e.status + ' ' : ''}${e.code}: ${e.message}`);
  return h('p', { class: 'error', role: 'alert' }, `error: ${(e as Error)?.message ?? String(e)}`);
}
