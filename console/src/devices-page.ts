import { api, q } from './api.js';
import { h, show, stateBadge, table, when } from './dom.js';
import { Device, Page } from './types.js';

const STATES = ['', 'registered', 'active', 'suspended', 'transferring', 'retired'];
const PAGE = 50;

/**
 * renderDevices: one page of devices from the server (the store's {after, limit} paging), filtered by id
 * prefix, owner, state and label there; the filter lives in the URL so a page can be bookmarked and the back button works.
 */
export async function renderDevices(app: HTMLElement, params: URLSearchParams, operator: boolean): Promise<void> {
  const idPrefix = params.get('idPrefix') ?? '';
  const owner = params.get('owner') ?? '';
  const state = params.get('state') ?? '';
  const label = params.get('label') ?? '';
  const after = params.get('after') ?? '';
  const page = await api<Page<Device>>('GET', `/v1/devices${q({ idPrefix, owner: operator ? owner : undefined, state, label, after, limit: PAGE })}`);
  const prefixInput = h('input', { name: 'idPrefix', value: idPrefix, placeholder: 'any', id: 'filter-prefix' });
  const ownerInput = h('input', { name: 'owner', value: owner, placeholder: 'any', id: 'filter-owner' });
  const labelInput = h('input', { name: 'label', value: label, placeholder: 'any', id: 'filter-label' });
  const stateSelect = h('select', { name: 'state', id: 'filter-state' }, ...STATES.map((s) => h('option', { value: s, ...(s === state ? { selected: '' } : {}) }, s || 'any')));
  const idInput = h('input', { name: 'id', placeholder: 'device id', id: 'open-id', required: '' });
  show(
    app,
    h('h1', {}, 'Devices'),
    h(
      'form',
      {
        class: 'inline',
        id: 'device-filter',
        onsubmit: (e: Event) => {
          e.preventDefault();
          location.hash = `#/devices${q({ idPrefix: prefixInput.value.trim(), owner: operator ? ownerInput.value.trim() : undefined, state: stateSelect.value, label: labelInput.value.trim() })}`;
        },
      },
      h('label', {}, 'Id starts with', prefixInput),
      operator ? h('label', {}, 'Owner', ownerInput) : null,
      h('label', {}, 'State', stateSelect),
      h('label', {}, 'Label', labelInput),
      h('button', { type: 'submit' }, 'Search'),
    ),
    h(
      'form',
      {
        class: 'inline',
        id: 'device-open',
        onsubmit: (e: Event) => {
          e.preventDefault();
          if (idInput.value.trim()) location.hash = `#/devices/${encodeURIComponent(idInput.value.trim())}`;
        },
      },
      h('label', {}, 'Open a device', idInput),
      h('button', { type: 'submit', class: 'secondary' }, 'Open'),
    ),
    page.items.length === 0
      ? h('p', { class: 'muted', id: 'no-devices' }, 'No devices match.')
      : table(
          ['id', 'owner', 'state', 'label', 'updated'],
          page.items.map((d) => [h('a', { href: `#/devices/${encodeURIComponent(d.id)}`, class: 'mono' }, d.id), d.owner ?? '–', stateBadge(d.state), d.label ?? '', when(d.updatedAt)]),
          'device-list',
        ),
    h(
      'div',
      { class: 'pager' },
      after ? h('a', { href: `#/devices${q({ idPrefix, owner, state, label })}` }, '« first page') : null,
      page.next ? h('a', { href: `#/devices${q({ idPrefix, owner, state, label, after: page.next })}`, id: 'next-page' }, 'next page »') : null,
    ),
  );
}
