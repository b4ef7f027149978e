import { api, q } from './api.js';
import { confirm } from './confirm.js';
import { h, show, table, when } from './dom.js';
import { EnrollmentRequest, Page } from './types.js';

/**
 * renderApprovals: the manual-approval queue (operator sessions only; the service refuses others): pending
 * requests, each approved or rejected after a confirmation naming the device.
 */
export async function renderApprovals(app: HTMLElement, params: URLSearchParams, notice?: HTMLElement): Promise<void> {
  const after = params.get('after') ?? '';
  const page = await api<Page<EnrollmentRequest>>('GET', `/v1/requests${q({ status: 'pending', after, limit: 50 })}`);
  const panel = h('div', { id: 'action-panel' });
  const ask = (r: EnrollmentRequest, action: 'approve' | 'reject') =>
    confirm(panel, {
      text:
        action === 'approve'
          ? `Approve the ${r.operation} request of ${r.deviceId} (label ${r.label}): the device gets its certificate when it asks again.`
          : `Reject the ${r.operation} request of ${r.deviceId} (label ${r.label}): the device is refused and must send a new request.`,
      action: `Yes, ${action}`,
      danger: action === 'reject',
      run: async () => {
        const out = await api<EnrollmentRequest>('POST', `/v1/requests/${encodeURIComponent(r.id)}/${action}`, {});
        await renderApprovals(app, params, h('div', { class: 'notice', id: 'action-result' }, `Request of ${out.deviceId}: ${out.status}.`));
      },
    });
  show(
    app,
    h('h1', {}, 'Approval queue'),
    notice ?? null,
    panel,
    page.items.length === 0
      ? h('p', { class: 'muted', id: 'no-requests' }, 'Nothing is waiting for approval.')
      : table(
          ['device', 'label', 'operation', 'CSR SHA-256', 'received', ''],
          page.items.map((r) => [
            h('a', { href: `#/devices/${encodeURIComponent(r.deviceId)}` }, r.deviceId),
            r.label,
            r.operation,
            h('span', { class: 'mono' }, r.csrSha256.slice(0, 16) + '…'),
            when(r.createdAt),
            h(
              'span',
              { class: 'actions' },
              h('button', { type: 'button', class: 'secondary', id: `approve-${r.deviceId}`, onclick: () => ask(r, 'approve') }, 'Approve'),
              h('button', { type: 'button', class: 'danger', id: `reject-${r.deviceId}`, onclick: () => ask(r, 'reject') }, 'Reject'),
            ),
          ]),
          'request-list',
        ),
    page.next ? h('div', { class: 'pager' }, h('a', { href: `#/approvals${q({ after: page.next })}`, id: 'next-page' }, 'next page »')) : null,
  );
}
