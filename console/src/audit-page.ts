import { api, q } from './api.js';
import { errorBox } from './error-box.js';
import { h, show, table, when } from './dom.js';
import { AuditRecord, AuditVerdict, Page } from './types.js';

const PAGE = 50;
/** CHUNK: records verified per call (a few milliseconds of hashing on the service); `chunk=` in the URL sets it */
const CHUNK = 2000;

/** localInput: an ISO time as a datetime-local field's value (the operator's local time, to the minute) */
function localInput(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** isoOf: a datetime-local field's value (local time) as the ISO time with a zone the API takes */
const isoOf = (local: string): string => (local ? new Date(local).toISOString() : '');

/**
 * renderAudit: the audit log (operator sessions; the service refuses others with its reason), filtered on
 * the server by device, event type (or a prefix such as "device.") and time range, paged by the API's
 * cursor; and "Verify chain", which verifies the hash chain chunk by chunk (GET /audit/verify, passing
 * back the position each chunk returns) and draws the progress between chunks. The verdict is the service's.
 */
export async function renderAudit(app: HTMLElement, params: URLSearchParams): Promise<void> {
  const device = params.get('device') ?? '';
  const type = params.get('type') ?? '';
  // no filter at all: the last 24 hours, so the first screen is recent events rather than the CA's birth
  const from = params.get('from') ?? (params.toString() === '' ? new Date(Date.now() - 86_400_000).toISOString() : '');
  const to = params.get('to') ?? '';
  const after = params.get('after') ?? '';
  const chunk = Math.min(Math.max(Number(params.get('chunk')) || CHUNK, 1), 10_000);
  const page = await api<Page<AuditRecord>>('GET', `/v1/audit${q({ device, type, from, to, after, limit: PAGE })}`);
  const deviceInput = h('input', { name: 'device', value: device, placeholder: 'any', id: 'audit-device' });
  const typeInput = h('input', { name: 'type', value: type, placeholder: 'any (or a prefix: device.)', id: 'audit-type' });
  const fromInput = h('input', { type: 'datetime-local', name: 'from', value: from ? localInput(from) : '', id: 'audit-from' });
  const toInput = h('input', { type: 'datetime-local', name: 'to', value: to ? localInput(to) : '', id: 'audit-to' });
  const filters = { device, type, from, to };

  const bar = h('progress', { id: 'verify-progress', max: '1', value: '0' });
  const status = h('p', { id: 'verify-status', class: 'muted' }, 'Not verified yet.');
  const verifyButton = h('button', { type: 'button', id: 'verify-chain', class: 'secondary' }, 'Verify chain');
  verifyButton.addEventListener('click', () => void verify());
  async function verify(): Promise<void> {
    verifyButton.setAttribute('disabled', '');
    status.className = 'muted';
    let position = { seq: 0, hash: '' };
    try {
      for (;;) {
        const v = await api<AuditVerdict>('GET', `/v1/audit/verify${q({ after: position.seq, hash: position.seq ? position.hash : undefined, limit: chunk })}`);
        position = v.position;
        const total = Math.max(v.total, position.seq, 1);
        bar.max = total;
        bar.value = v.done && v.ok ? total : position.seq;
        const pct = Math.floor((100 * bar.value) / total);
        if (!v.ok) {
          status.className = 'error';
          status.textContent = `Chain broken at record ${v.firstBad?.seq}: ${v.firstBad?.problem}. Records 1 to ${position.seq} verified.`;
          return;
        }
        if (v.done) {
          status.className = 'notice';
          status.textContent = `100% — chain valid: ${position.seq} records, last hash ${position.hash}.`;
          return;
        }
        status.textContent = `${pct}% — ${position.seq} of ${total} records verified…`;
      }
    } catch (e) {
      show(status, errorBox(e));
    } finally {
      verifyButton.removeAttribute('disabled');
    }
  }

  show(
    app,
    h('h1', {}, 'Audit log'),
    h('div', { class: 'card', id: 'verify' }, h('div', { class: 'actions' }, verifyButton, bar), status),
    h(
      'form',
      {
        class: 'inline',
        id: 'audit-filter',
        onsubmit: (e: Event) => {
          e.preventDefault();
          location.hash = `#/audit${q({ device: deviceInput.value.trim(), type: typeInput.value.trim(), from: isoOf(fromInput.value), to: isoOf(toInput.value), all: fromInput.value ? undefined : '1' })}`;
        },
      },
      h('label', {}, 'Device', deviceInput),
      h('label', {}, 'Event type', typeInput),
      h('label', {}, 'From', fromInput),
      h('label', {}, 'To', toInput),
      h('button', { type: 'submit' }, 'Filter'),
    ),
    page.items.length === 0
      ? h('p', { class: 'muted', id: 'no-records' }, page.next ? 'No matching records in this stretch of the log; see the next page.' : 'No matching records.')
      : table(
          ['#', 'when', 'event', 'by', 'about', 'details'],
          page.items.map((r) => [
            r.seq,
            when(r.at),
            r.type,
            h('span', { class: 'mono' }, r.actor),
            h('a', { href: `#/audit${q({ device: r.subject, all: '1' })}`, class: 'mono' }, r.subject),
            h('span', { class: 'mono' }, JSON.stringify(r.data)),
          ]),
          'audit-list',
        ),
    h(
      'div',
      { class: 'pager' },
      after ? h('a', { href: `#/audit${q({ ...filters, all: '1' })}` }, '« first page') : null,
      page.next ? h('a', { href: `#/audit${q({ ...filters, after: page.next, all: '1' })}`, id: 'next-page' }, 'next page »') : null,
    ),
  );
}
