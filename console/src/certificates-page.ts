import { api, q } from './api.js';
import { confirm } from './confirm.js';
import { Child, h, show, table, when } from './dom.js';
import { Certificate, CertificateDetail, Page } from './types.js';

/** EKU_NAMES: the extended key usages device certificates carry (RFC 5280 §4.2.1.12; TCG for the AK) */
const EKU_NAMES: Record<string, string> = { '1.3.6.1.5.5.7.3.1': 'serverAuth', '1.3.6.1.5.5.7.3.2': 'clientAuth', '2.23.133.8.3': 'tcg-kp-AIKCertificate' };

const REASONS = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'privilegeWithdrawn'];

/**
 * renderCertificates: find a certificate by serial (as openssl prints it, colons and case as you like: the
 * service normalizes) or list a device's certificates (paged on the server).
 */
export async function renderCertificates(app: HTMLElement, params: URLSearchParams): Promise<void> {
  const device = params.get('device') ?? '';
  const after = params.get('after') ?? '';
  const serialInput = h('input', { name: 'serial', placeholder: 'serial (hex)', id: 'find-serial', required: '' });
  const deviceInput = h('input', { name: 'device', value: device, placeholder: 'device id', id: 'find-device', required: '' });
  const page = device ? await api<Page<Certificate>>('GET', `/v1/certificates${q({ device, after, limit: 50 })}`) : null;
  show(
    app,
    h('h1', {}, 'Certificates'),
    h(
      'form',
      {
        class: 'inline',
        id: 'serial-find',
        onsubmit: (e: Event) => {
          e.preventDefault();
          if (serialInput.value.trim()) location.hash = `#/certificates/${encodeURIComponent(serialInput.value.trim())}`;
        },
      },
      h('label', {}, 'Serial', serialInput),
      h('button', { type: 'submit' }, 'Open'),
    ),
    h(
      'form',
      {
        class: 'inline',
        id: 'device-find',
        onsubmit: (e: Event) => {
          e.preventDefault();
          location.hash = `#/certificates${q({ device: deviceInput.value.trim() })}`;
        },
      },
      h('label', {}, 'Certificates of device', deviceInput),
      h('button', { type: 'submit', class: 'secondary' }, 'List'),
    ),
    page === null
      ? null
      : page.items.length === 0
        ? h('p', { class: 'muted', id: 'no-certificates' }, 'No certificates.')
        : table(
            ['serial', 'status', 'profile', 'not after'],
            page.items.map((c) => [
              h('a', { href: `#/certificates/${encodeURIComponent(c.serial)}`, class: 'mono' }, c.serial),
              c.status === 'valid' ? 'valid' : `revoked (${c.revocationReason ?? 'unspecified'})`,
              c.profile,
              when(c.notAfter),
            ]),
            'certificate-list',
          ),
    page?.next ? h('div', { class: 'pager' }, h('a', { href: `#/certificates${q({ device, after: page.next })}`, id: 'next-page' }, 'next page »')) : null,
  );
}

/** renderCertificate: one certificate decoded, its PEM, and revocation with a reason after a confirmation. */
export async function renderCertificate(app: HTMLElement, serial: string, notice?: HTMLElement): Promise<void> {
  const c = await api<CertificateDetail>('GET', `/v1/certificates/${encodeURIComponent(serial)}`);
  const d = c.decoded;
  const status = c.status === 'valid' ? 'valid' : `revoked (${c.revocationReason ?? 'unspecified'}) ${when(c.revokedAt)}`;
  const device: Child = c.deviceId ? h('a', { href: `#/devices/${encodeURIComponent(c.deviceId)}` }, c.deviceId) : '–';
  const rows: Child[][] =
    d === null
      ? [
          ['subject', c.subject],
          ['decoded', 'the service could not decode these bytes'],
          ['device', device],
          ['profile', c.profile],
          ['status', status],
        ]
      : [
          ['subject', h('span', { class: 'mono' }, d.subject)],
          ['issuer', h('span', { class: 'mono' }, d.issuer)],
          ['device', device],
          ['profile', c.profile],
          ['valid from', when(d.validFrom)],
          ['valid to', when(d.validTo)],
          ['subject alternative names', d.subjectAltName ?? '–'],
          ['extended key usage', d.keyUsage.length ? d.keyUsage.map((o) => (EKU_NAMES[o] ? `${EKU_NAMES[o]} (${o})` : o)).join(', ') : '–'],
          ['public key', d.publicKey],
          ['SHA-256 fingerprint', h('span', { class: 'mono' }, d.fingerprintSha256)],
          ['status', status],
        ];
  const panel = h('div', { id: 'action-panel' });
  const ask = () => {
    const reason = h('select', { id: 'revoke-reason' }, ...REASONS.map((r) => h('option', { value: r, ...(r === 'unspecified' ? { selected: '' } : {}) }, r)));
    const text = h('p', { id: 'confirm-text' });
    const say = () =>
      (text.textContent =
        reason.value === 'certificateHold'
          ? `Put certificate ${c.serial} of ${c.deviceId ?? 'no device'} on hold: relying parties see it revoked (certificateHold) until the device is resumed.`
          : `Revoke certificate ${c.serial} of ${c.deviceId ?? 'no device'} (${reason.value}): relying parties see it revoked at the next OCSP answer and CRL. This cannot be undone.`);
    reason.addEventListener('change', say);
    say();
    confirm(panel, {
      text,
      fields: [h('label', {}, 'Reason', reason)],
      action: 'Yes, revoke',
      danger: true,
      run: async () => {
        const r = await api<{ certificate: Certificate; changed: boolean }>('POST', `/v1/certificates/${encodeURIComponent(c.serial)}/revoke`, { reason: reason.value });
        await renderCertificate(
          app,
          c.serial,
          h('div', { class: 'notice', id: 'action-result' }, r.changed ? `Revoked (${r.certificate.revocationReason}).` : `Already revoked (${r.certificate.revocationReason}): nothing changed.`),
        );
      },
    });
  };
  show(
    app,
    h('h1', {}, 'Certificate ', h('span', { class: 'mono', id: 'certificate-serial' }, c.serial), ' ', h('span', { class: `state state-${c.status === 'valid' ? 'active' : 'retired'}` }, c.status)),
    notice ?? null,
    table(['field', 'value'], rows, 'certificate-fields'),
    c.status === 'valid' || c.revocationReason === 'certificateHold'
      ? h('div', { class: 'actions', id: 'actions' }, h('button', { type: 'button', class: 'danger', id: 'action-revoke', onclick: ask }, 'Revoke…'))
      : null,
    panel,
    h('h2', {}, 'PEM'),
    h('pre', { class: 'mono', id: 'certificate-pem' }, c.pem),
  );
}
