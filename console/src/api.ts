/**
 * api: the console's one way to the service. Every call goes to /console/api on the same origin with the
 * session cookie (HttpOnly: this script never sees it); a state-changing call carries the session's CSRF
 * token in X-CSRF-Token. A refusal becomes an ApiError with the API's own reason.
 */

/** ApiError: an answer other than 2xx, with the code and message of the API's { error } body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;

/** useCsrf: the token from sign-in or GET /session, sent on every later POST. */
export function useCsrf(token: string | null): void {
  csrf = token;
}

export async function api<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  let r: Response;
  try {
    r = await fetch(`/console/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'unreachable', 'the service did not answer (network error)');
  }
  const text = await r.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!r.ok) {
    const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(r.status, e?.code ?? `http-${r.status}`, e?.message ?? (text.trim() || `HTTP ${r.status}`));
  }
  return json as T;
}

/** q: a query string from the parameters that are set. */
export function q(params: Record<string, string | number | undefined | null>): string {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, String(v));
  const out = s.toString();
  return out ? `?${out}` : '';
}
