import { api } from './api.js';
import { h, show, stateBadge, table, when } from './dom.js';
import { Overview } from './types.js';

/** renderOverview: the fleet at a glance (devices by state and owner, approvals, CRLs, OCSP, store). */
export async function renderOverview(app: HTMLElement): Promise<void> {
  const o = await api<Overview>('GET', '/overview');
  const soon = (iso: string | null) => (iso && new Date(iso).getTime() < Date.now() ? ' (overdue)' : '');
  show(
    app,
    h('h1', {}, 'Overview'),
    h(
      'div',
      { class: 'cards' },
      h('div', { class: 'card', id: 'devices-total' }, h('div', { class: 'muted' }, 'Devices'), h('div', { class: 'big' }, o.devices.total)),
      o.pendingApprovals === null ? null : h('div', { class: 'card', id: 'pending-approvals' }, h('div', { class: 'muted' }, 'Pending approvals'), h('div', { class: 'big' }, o.pendingApprovals)),
      h('div', { class: 'card', id: 'ocsp-responder' }, h('div', { class: 'muted' }, 'OCSP responder certificate expires'), h('div', {}, o.ocspResponder ? when(o.ocspResponder.notAfter) : '–')),
      h(
        'div',
        { class: 'card', id: 'store-health' },
        h('div', { class: 'muted' }, 'Store'),
        o.store.healthy ? h('div', { class: 'notice' }, 'healthy') : h('div', { class: 'error' }, o.store.problem ?? 'unavailable'),
      ),
    ),
    h('h2', {}, 'Devices by state'),
    table(
      ['state', 'devices'],
      Object.entries(o.devices.byState).map(([s, n]) => [h('a', { href: `#/devices?state=${encodeURIComponent(s)}` }, stateBadge(s)), n]),
      'by-state',
    ),
    h('h2', {}, 'Devices by owner'),
    table(
      ['owner', 'devices'],
      o.devices.byOwner.map((x) => [x.owner === null ? h('span', { class: 'muted' }, '(none)') : h('a', { href: `#/devices?owner=${encodeURIComponent(x.owner)}` }, x.owner), x.count]),
      'by-owner',
    ),
    h('h2', {}, 'CRL shards'),
    table(
      ['shard', 'CRL number', 'last update', 'next update', 'entries'],
      o.crlShards.map((c) => [c.shard, c.number ?? '–', when(c.thisUpdate), when(c.nextUpdate) + soon(c.nextUpdate), c.entries ?? '–']),
      'crl-shards',
    ),
  );
}
