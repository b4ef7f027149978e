import { api } from './api.js';
import { barChart } from './bar-chart.js';
import { h, show, stateBadge, table, when } from './dom.js';
import { errorBox } from './error-box.js';
import { ChartSeries, Overview } from './types.js';

const pad = (n: number) => String(n).padStart(2, '0');
const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** utcDay: "Mon 30" for a UTC day; the buckets are UTC hours and days, as the store counts them. */
const utcDay = (d: Date) => `${DAY_NAMES[d.getUTCDay()]} ${d.getUTCDate()}`;

/**
 * chart: one overview chart from its own API call; a refusal shows the API's reason in its place, so one
 * failing chart never blanks the page.
 */
async function chart(path: string, render: (s: ChartSeries) => SVGSVGElement): Promise<Element> {
  try {
    return render(await api<ChartSeries>('GET', path));
  } catch (e) {
    return errorBox(e);
  }
}

/** enrollmentsChart: device certificates issued per UTC hour over the last 7 days, the current hour last. */
const enrollmentsChart = (s: ChartSeries) =>
  barChart({
    id: 'chart-enrollments',
    label: 'Enrollments per hour, last 7 days (UTC)',
    start: Date.parse(s.start),
    bucketMs: s.bucketSeconds * 1000,
    counts: s.counts,
    describe: (d, n) => `${d.toISOString().slice(0, 10)} ${pad(d.getUTCHours())}:00 UTC: ${n} issued`,
    tick: (d) => (d.getUTCHours() === 0 ? utcDay(d) : null),
  });

/** expiringChart: valid device certificates by the UTC day they expire, today (from now on) first. */
const expiringChart = (s: ChartSeries) =>
  barChart({
    id: 'chart-expiring',
    label: 'Certificates expiring per day, next 90 days (UTC)',
    start: Date.parse(s.start),
    bucketMs: s.bucketSeconds * 1000,
    counts: s.counts,
    describe: (d, n) => `${d.toISOString().slice(0, 10)}: ${n} expire`,
    tick: (d, i) => (i % 14 === 0 ? `${d.toISOString().slice(5, 10)}` : null),
  });

/** renderOverview: the fleet at a glance (devices by state and owner, approvals, the two charts, CRLs, OCSP, store). */
export async function renderOverview(app: HTMLElement): Promise<void> {
  const o = await api<Overview>('GET', '/overview');
  // the charts count the whole fleet: an operator's only (an owner session would get 403)
  const charts = o.scope === 'operator' ? await Promise.all([chart('/overview/enrollments', enrollmentsChart), chart('/overview/expiring', expiringChart)]) : null;
  const total = (id: string) => {
    const el = charts?.find((c) => c.id === id);
    return el ? ` (${el.getAttribute('data-total') ?? '0'})` : '';
  };
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
      h(
        'div',
        { class: 'card', id: 'key-backend-health' },
        h('div', { class: 'muted' }, 'Key backend'),
        o.keyBackend.healthy ? h('div', { class: 'notice' }, 'healthy') : h('div', { class: 'error' }, o.keyBackend.problem ?? 'unavailable'),
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
    ...(charts
      ? [
          h('h2', {}, `Enrollments per hour, last 7 days${total('chart-enrollments')}`),
          h('div', { class: 'chart-box' }, charts[0]),
          h('h2', {}, `Certificates expiring, next 90 days${total('chart-expiring')}`),
          h('div', { class: 'chart-box' }, charts[1]),
        ]
      : [h('p', { class: 'muted', id: 'charts-operator-only' }, 'The enrollment and expiry charts count the whole fleet: an operator sees them.')]),
    h('h2', {}, 'CRL shards'),
    table(
      ['shard', 'CRL number', 'last update', 'next update', 'entries'],
      o.crlShards.map((c) => [c.shard, c.number ?? '–', when(c.thisUpdate), when(c.nextUpdate) + soon(c.nextUpdate), c.entries ?? '–']),
      'crl-shards',
    ),
  );
}
