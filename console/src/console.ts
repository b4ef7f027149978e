import { ApiError, api, useCsrf } from './api.js';
import { renderDevice } from './device-page.js';
import { errorBox } from './error-box.js';
import { renderDevices } from './devices-page.js';
import { renderApprovals } from './approvals-page.js';
import { renderAudit } from './audit-page.js';
import { renderCertificate, renderCertificates } from './certificates-page.js';
import { h, show } from './dom.js';
import { renderOverview } from './overview-page.js';
import { Session } from './types.js';

/**
 * console: the operator console's entry. It asks the service for the session (the cookie is HttpOnly),
 * shows the sign-in form when there is none, and routes on the URL fragment: #/overview, #/devices,
 * #/devices/<id>, #/certificates, #/certificates/<serial>, #/approvals, #/audit. Every page is drawn from the API's answers; a refusal is shown with the API's reason.
 */
const app = document.getElementById('app') as HTMLElement;
const bar = document.getElementById('bar') as HTMLElement;
let session: Session | null = null;

async function start(): Promise<void> {
  try {
    session = await api<Session>('GET', '/session');
    useCsrf(session.csrf);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      show(app, errorBox(e));
      return;
    }
    session = null;
  }
  await route();
}

function signIn(reason?: string): void {
  show(bar, h('span', { class: 'brand' }, 'device-ca'));
  const token = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', placeholder: 'dca_…', required: '' });
  const out = h('div', { id: 'signin-error' }, reason ? h('p', { class: 'error', role: 'alert' }, reason) : null);
  /** begin: a sign-in answered (token or certificate): the session's CSRF token, then the page asked for; a refusal stays on the form with its reason. */
  const begin = async (answer: Promise<Session>): Promise<void> => {
    try {
      session = await answer;
      useCsrf(session.csrf);
      if (!location.hash || location.hash === '#/') location.hash = '#/overview';
      await route();
    } catch (err) {
      show(out, errorBox(err));
    }
  };
  show(
    app,
    h(
      'div',
      { class: 'signin card' },
      h('h1', {}, 'Sign in'),
      h(
        'form',
        {
          id: 'signin',
          onsubmit: (e: Event) => {
            e.preventDefault();
            void begin(api<Session>('POST', '/session', { token: token.value.trim() }));
            token.value = '';
          },
        },
        h('label', {}, 'Admin token (from `device-ca tokens create`)', token),
        h('button', { type: 'submit' }, 'Sign in'),
      ),
      h('p', { class: 'or' }, 'or'),
      h(
        'button',
        {
          type: 'button',
          id: 'signin-certificate',
          class: 'secondary',
          // the TLS client certificate the browser chose for this site (admin.clientCerts pins operators')
          onclick: () => void begin(api<Session>('POST', '/session/certificate', {})),
        },
        'Sign in with certificate',
      ),
      out,
    ),
  );
}

function drawBar(s: Session): void {
  show(
    bar,
    h('span', { class: 'brand' }, 'device-ca'),
    h('a', { href: '#/overview' }, 'Overview'),
    h('a', { href: '#/devices' }, 'Devices'),
    h('a', { href: '#/certificates' }, 'Certificates'),
    s.scope === 'operator' ? h('a', { href: '#/approvals' }, 'Approvals') : null,
    s.scope === 'operator' ? h('a', { href: '#/audit', id: 'nav-audit' }, 'Audit') : null,
    h('span', { class: 'spacer' }),
    h('span', { class: 'scope', id: 'scope' }, s.scope),
    h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        id: 'sign-out',
        onclick: async () => {
          await api('POST', '/session/sign-out', {}).catch(() => undefined);
          session = null;
          useCsrf(null);
          location.hash = '#/';
          signIn('Signed out.');
        },
      },
      'Sign out',
    ),
  );
}

/**
 * route renders the page the hash names into a view of its own, put in place at once: a page still
 * loading when the operator moves on renders into its detached view and is never seen (without this, a
 * slow page could land over the one navigated to after it).
 */
async function route(): Promise<void> {
  if (!session) {
    signIn();
    return;
  }
  drawBar(session);
  const hash = location.hash.replace(/^#/, '') || '/overview';
  const [pathPart, query = ''] = hash.split('?', 2);
  const params = new URLSearchParams(query);
  const view = h('div', { class: 'view' }, h('p', { class: 'muted' }, 'Loading…'));
  show(app, view);
  const current = () => view.isConnected;
  try {
    const device = /^\/devices\/(.+)$/.exec(pathPart);
    const cert = /^\/certificates\/(.+)$/.exec(pathPart);
    if (device) await renderDevice(view, decodeURIComponent(device[1]), session.scope);
    else if (cert) await renderCertificate(view, decodeURIComponent(cert[1]));
    else if (pathPart === '/certificates') await renderCertificates(view, params);
    else if (pathPart === '/approvals') await renderApprovals(view, params);
    else if (pathPart === '/audit') await renderAudit(view, params);
    else if (pathPart === '/devices') await renderDevices(view, params, session.scope === 'operator');
    else await renderOverview(view);
  } catch (e) {
    if (!current()) return;
    if (e instanceof ApiError && e.status === 401) {
      session = null;
      useCsrf(null);
      signIn(`${e.message}`);
      return;
    }
    show(view, errorBox(e));
  }
}

window.addEventListener('hashchange', () => void route());
void start();
