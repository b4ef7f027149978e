import { ApiError, api, q } from './api.js';
import { confirm } from './confirm.js';
import { errorBox } from './error-box.js';
import { Child, h, show, stateBadge, table, when } from './dom.js';
import { AuditRecord, Certificate, Device, Page } from './types.js';

type DeviceDetail = Device & { certificates: Certificate[] };
type ActionReply = { device: Device; certificates: unknown[]; secret?: string; secretExpiresAt?: string };

interface Action {
  name: string;
  label: string;
  path: string;
  danger?: boolean;
  /** to: the action names a new owner, asked for in the confirmation */
  to?: boolean;
  /** consequence: what the confirmation says will happen, in numbers */
  consequence: (to: string) => string;
}

/**
 * actionsFor: the lifecycle actions that make sense for a device in its state, for this session; the
 * service decides (a refusal shows its reason), this only keeps the page short.
 */
function actionsFor(d: DeviceDetail, scope: string): Action[] {
  const now = Date.now();
  const live = d.certificates.filter((c) => c.status === 'valid' && new Date(c.notAfter).getTime() > now).length;
  const held = d.certificates.filter((c) => c.status === 'revoked' && c.revocationReason === 'certificateHold' && new Date(c.notAfter).getTime() > now).length;
  const certs = (n: number) => `${n} certificate${n === 1 ? '' : 's'}`;
  const operator = scope === 'operator';
  const isNewOwner = d.state === 'transferring' && scope === `owner:${d.pendingOwner}`;
  const out: Action[] = [];
  if (d.state === 'active')
    out.push({ name: 'suspend', label: 'Suspend', path: 'suspend', consequence: () => `puts ${certs(live)} on hold (certificateHold); the device cannot enroll until it is resumed.` });
  if (d.state === 'suspended') out.push({ name: 'resume', label: 'Resume', path: 'resume', consequence: () => `releases the hold on ${certs(held)}.` });
  if ((d.state === 'active' || d.state === 'registered') && (operator || scope === `owner:${d.owner}`))
    out.push({
      name: 'release',
      label: 'Release to…',
      path: 'release',
      to: true,
      consequence: (to) => `revokes ${certs(live + held)} (affiliationChanged); the device waits for ${to || 'the new owner'} to claim it.`,
    });
  if (d.state === 'transferring' && !isNewOwner)
    out.push({
      name: 'cancel-release',
      label: 'Cancel release',
      path: 'cancel-release',
      consequence: () => `keeps the device with ${d.owner ?? 'no owner'} and makes a new one-time enrollment secret.`,
    });
  if (d.state === 'transferring' && (isNewOwner || operator))
    out.push({ name: 'claim', label: 'Claim', path: 'claim', consequence: () => `makes ${d.pendingOwner} the owner and makes a new one-time enrollment secret.` });
  if (operator && d.state !== 'retired')
    out.push({
      name: 'transfer',
      label: 'Transfer to…',
      path: 'transfer',
      to: true,
      consequence: (to) => `revokes ${certs(live + held)} (affiliationChanged), makes ${to || 'the new owner'} the owner at once and makes a new one-time enrollment secret.`,
    });
  if ((d.state === 'active' || d.state === 'registered') && (operator || scope === `owner:${d.owner}`))
    out.push({
      name: 'secret',
      label: 'New secret',
      path: 'secret',
      consequence: () => `makes a new one-time enrollment secret, shown once on this page; the current secret stops working and pending approval requests are cancelled; ${certs(live)} stay valid.`,
    });
  if (d.state !== 'retired' && !isNewOwner)
    out.push({
      name: 'retire',
      label: 'Retire',
      path: 'retire',
      danger: true,
      consequence: () => `revokes ${certs(live + held)} (cessationOfOperation); the device can never enroll again. This cannot be undone.`,
    });
  return out;
}

/** renderDevice: one device, its certificates, its audit history and its actions. */
export async function renderDevice(app: HTMLElement, id: string, scope: string, notice?: Child): Promise<void> {
  const d = await api<DeviceDetail>('GET', `/v1/devices/${encodeURIComponent(id)}`);
  // the new owner of a transferring device sees its history once it has claimed it (403 until then)
  const history = await api<Page<AuditRecord>>('GET', `/devices/${encodeURIComponent(id)}/audit${q({ limit: 100 })}`).catch((e: unknown) => e as ApiError);
  const panel = h('div', { id: 'action-panel' });
  const ask = (a: Action) => {
    const toInput = h('input', { id: 'action-to', placeholder: 'new owner', required: '' });
    const text = h('p', { id: 'confirm-text' }, `${a.label.replace('…', '')} ${d.id}: ${a.consequence('')}`);
    if (a.to) toInput.addEventListener('input', () => (text.textContent = `${a.label.replace('…', '')} ${d.id} to ${toInput.value}: ${a.consequence(toInput.value.trim())}`));
    confirm(panel, {
      text,
      fields: a.to ? [h('label', {}, 'New owner', toInput)] : [],
      action: `Yes, ${a.label.replace('…', '').toLowerCase()}`,
      danger: a.danger,
      run: async () => {
        const body = a.to ? { to: toInput.value.trim() } : {};
        const r = await api<ActionReply>('POST', `/v1/devices/${encodeURIComponent(d.id)}/${a.path}`, body);
        const changed = r.certificates.length;
        await renderDevice(
          app,
          id,
          scope,
          h(
            'div',
            { class: 'notice', id: 'action-result' },
            `${a.label.replace('…', '')}: done; the device is now ${r.device.state}; ${changed} certificate${changed === 1 ? '' : 's'} changed.`,
            r.secret ? h('div', {}, 'New one-time enrollment secret (shown once): ', h('span', { class: 'mono', id: 'new-secret' }, r.secret), ` valid until ${when(r.secretExpiresAt)}`) : null,
          ),
        );
      },
    });
  };
  show(
    app,
    h('h1', {}, 'Device ', h('span', { class: 'mono', id: 'device-id' }, d.id), ' ', stateBadge(d.state)),
    notice ?? null,
    table(['owner', 'label', 'pending owner', 'created', 'updated'], [[d.owner ?? '–', d.label ?? '', d.pendingOwner ?? '–', when(d.createdAt), when(d.updatedAt)]], 'device-facts'),
    h(
      'div',
      { class: 'actions', id: 'actions' },
      ...actionsFor(d, scope).map((a) => h('button', { type: 'button', class: a.danger ? 'danger' : 'secondary', id: `action-${a.name}`, onclick: () => ask(a) }, a.label)),
    ),
    panel,
    h('h2', {}, 'Certificates'),
    d.certificates.length === 0
      ? h('p', { class: 'muted' }, 'No certificates.')
      : table(
          ['serial', 'status', 'profile', 'not before', 'not after'],
          d.certificates.map((c) => [
            h('span', { class: 'mono' }, c.serial),
            c.status === 'valid' ? 'valid' : `revoked (${c.revocationReason ?? 'unspecified'}) ${when(c.revokedAt)}`,
            c.profile,
            when(c.notBefore),
            when(c.notAfter),
          ]),
          'certificates',
        ),
    h('h2', {}, 'History'),
    history instanceof Error
      ? errorBox(history)
      : table(
          ['#', 'when', 'event', 'by', 'details'],
          history.items.map((r) => [r.seq, when(r.at), r.type, h('span', { class: 'mono' }, r.actor), h('span', { class: 'mono' }, JSON.stringify(r.data))]),
          'history',
        ),
  );
}
