import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Browser, BrowserContext, Page, hasChromium, launchChromium } from '../helpers/browser';
import { Device, header, openssl, pkiClient } from '../helpers/pki-client';
import { REPO_ROOT, RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The operator console (/console/) in headless Chromium from Debian, against the built service: an operator
 * signs in with a token from `device-ca tokens create`, finds a device and retires it (the store says
 * retired, `openssl ocsp` says revoked, the overview counts change); an owner-scoped session neither sees
 * nor acts on another owner's device, in the page or by direct calls with its cookie; a POST without the
 * CSRF token and a cross-site form post are refused; sign-out ends the session; the CSP header is sent and
 * no console file is inline. Screenshots of each page land in test-results/console/.
 */

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let operatorToken: string;
let acmeToken: string;
let browser: Browser;
let base: string;
let enrolled: Device;

const SHOTS = path.join(REPO_ROOT, 'test-results', 'console');
const { curl, cliOk, csrB64, postEst, enroll, register, expectOcsp, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, issuingPem: () => issuingPem, operatorToken: () => operatorToken });

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
const stateInStore = async (id: string): Promise<string> => (JSON.parse(await cliOk('devices', 'show', id, '--json')) as { state: string }).state;

/** signIn: a fresh browser (its own cookie jar) signed in with a token through the form. */
async function signIn(token: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.toString()));
  await page.goto(`${base}/console/`);
  await page.locator('#token').fill(token);
  await page.locator('#signin button[type=submit]').click();
  await page.locator('#scope').waitFor();
  expect(errors).toEqual([]);
  return { context, page };
}

/** csrfOf: the session's CSRF token, as the console's script reads it (GET /console/api/session with the cookie). */
async function csrfOf(page: Page): Promise<string> {
  return page.evaluate<string>(`fetch('/console/api/session').then((r) => r.json()).then((j) => j.csrf)`);
}

beforeAll(async () => {
  assertBuilt();
  if (!hasChromium()) throw new Error('/usr/bin/chromium is missing: run scripts/install-test-deps.sh (Debian package chromium)');
  fs.mkdirSync(SHOTS, { recursive: true });
  tmp = makeTmpDir('device-ca-console-');
  // a label with manual approval, for the approval queue (`manual`), beside the default one
  // certificates for 30 days, so the expiry chart (next 90 days) shows them
  svc = await startService({ configYaml: ['profiles:', '  default: { validity: 30d }', 'est:', '  labels:', '    default: {}', '    manual: { manualApproval: true }', ''].join('\n') });
  base = `https://localhost:${svc.httpsPort}`;
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  acmeToken = (await cliOk('tokens', 'create', '--scope', 'owner:acme')).trim();
  enrolled = await enroll('acme-1', 'acme');
  await register('acme-2', 'acme', 'api');
  await register('globex-1', 'globex', 'api');
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await teardown();
});

describe('the console is served by the service, with a strict Content-Security-Policy', () => {
  it('GET /console/ sends the CSP and anti-framing headers; the page and its files hold no inline script or style', async () => {
    const r = await curl(`${base}/console/`);
    expect(r.status).toBe(200);
    const csp = header(r, 'content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(header(r, 'x-frame-options')).toBe('DENY');
    expect(header(r, 'content-type')).toMatch(/^text\/html/);
    // every script is a file of its own, no style element or attribute, no on* handler attribute
    expect(r.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(r.text).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    const assets = [...r.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(assets.sort()).toEqual(['console.css', 'console.js']);
    for (const a of assets) {
      const f = await curl(`${base}/console/${a}`);
      expect({ a, status: f.status, csp: header(f, 'content-security-policy') }).toEqual({ a, status: 200, csp });
    }
    expect((await curl(`${base}/console`)).status).toBe(301);
  });

  it('the browser renders the console with no CSP violation', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const messages: string[] = [];
    page.on('console', (m) => messages.push(m.toString()));
    await page.goto(`${base}/console/`);
    await page.locator('#signin').waitFor();
    await shot(page, '0-sign-in');
    expect(messages.filter((m) => /Content Security Policy|Refused/i.test(m))).toEqual([]);
    await context.close();
  });
});

describe('an operator session', () => {
  let context: BrowserContext;
  let page: Page;
  beforeAll(async () => {
    ({ context, page } = await signIn(operatorToken));
  });
  afterAll(() => context?.close());

  it('the session cookie is HttpOnly, Secure, SameSite=Strict and scoped to /console', async () => {
    const cookies = (await context.cookies()).filter((c) => c.name === 'dca_console');
    expect(cookies.map((c) => ({ path: c.path, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite }))).toEqual([{ path: '/console', httpOnly: true, secure: true, sameSite: 'Strict' }]);
    expect(await page.evaluate<string>('document.cookie')).toBe('');
  });

  it('sees the fleet on the overview, finds a device and retires it: the store says retired, OCSP says revoked, the counts change', async () => {
    await page.locator('#devices-total .big').waitFor();
    expect(await page.locator('#devices-total .big').innerText()).toBe('3');
    expect(await page.locator('#by-state').innerText()).toMatch(/active\s+1/);
    expect(await page.locator('#by-state').innerText()).toMatch(/retired\s+0/);
    expect(await page.locator('#store-health').innerText()).toContain('healthy');
    expect(await page.locator('#key-backend-health').innerText()).toContain('healthy');
    await shot(page, '1-overview');

    await page.goto(`${base}/console/#/devices`);
    await page.locator('#device-list').waitFor();
    expect(await page.locator('#device-list').innerText()).toMatch(/acme-1[\s\S]*acme-2[\s\S]*globex-1/);
    // search by id prefix, answered by the server
    await page.locator('#filter-prefix').fill('acme-');
    await page.locator('#device-filter button[type=submit]').click();
    await page.locator('#device-list:not(:has-text("globex-1"))').waitFor();
    expect(await page.locator('#device-list').innerText()).toMatch(/acme-1[\s\S]*acme-2/);
    await shot(page, '2-devices');
    await page.locator('#device-list a:text-is("acme-1")').click();
    await page.locator('#certificates').waitFor();
    expect(await page.locator('#device-id').innerText()).toBe('acme-1');
    expect(await page.locator('#certificates').innerText()).toContain('valid');
    await page.locator('#action-retire').click();
    expect(await page.locator('#confirm-text').innerText()).toBe('Retire acme-1: revokes 1 certificate (cessationOfOperation); the device can never enroll again. This cannot be undone.');
    await shot(page, '3-device-confirm-retire');
    await page.locator('#confirm-action').click();
    await page.locator('#action-result').waitFor();
    expect(await page.locator('#action-result').innerText()).toContain('the device is now retired; 1 certificate changed');
    expect(await page.locator('#history').innerText()).toContain('device.retired');
    await shot(page, '4-device-retired');
    // on a phone: the same page, tables scroll sideways inside their box, the page itself does not
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate<boolean>('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    await shot(page, '4-device-retired-phone');
    await page.setViewportSize({ width: 1280, height: 900 });

    expect(await stateInStore('acme-1')).toBe('retired');
    await expectOcsp(enrolled, 'revoked', 'cessationOfOperation');

    await page.goto(`${base}/console/#/overview`);
    await page.locator('#by-state').waitFor();
    expect(await page.locator('#by-state').innerText()).toMatch(/active\s+0/);
    expect(await page.locator('#by-state').innerText()).toMatch(/retired\s+1/);
  });

  it('draws enrollments per hour and certificates expiring per day as SVG: N enrollments raise the current hour by N and their expiry day by N', async () => {
    const HOUR = 3600_000;
    const DAY = 86400_000;
    const messages: string[] = [];
    page.on('console', (m) => messages.push(m.toString()));
    const bar = async (chart: string, start: number) => Number(await page.locator(`#${chart} rect[data-start="${new Date(start).toISOString()}"]`).getAttribute('data-count'));
    const total = async (chart: string) => Number(await page.locator(`#${chart}`).getAttribute('data-total'));
    const overview = async () => {
      await page.goto(`${base}/console/#/devices`);
      await page.goto(`${base}/console/#/overview`);
      await page.locator('#chart-expiring').waitFor();
    };
    // an hour that begins while the test runs moves the current bar: then the test runs again in the new hour
    for (let attempt = 1; ; attempt++) {
      const hour = Math.floor(Date.now() / HOUR) * HOUR;
      await overview();
      expect(await page.locator('#chart-enrollments rect').count()).toBe(168);
      expect(await page.locator('#chart-expiring rect').count()).toBe(90);
      // the current hour is the last bar; so far the device certificates were acme-1's (beforeAll) and earlier attempts'
      expect(await page.locator('#chart-enrollments rect').last().getAttribute('data-start')).toBe(new Date(hour).toISOString());
      const before = { hour: await bar('chart-enrollments', hour), total: await total('chart-enrollments') };
      const devices = [];
      for (let i = 0; i < 3; i++) devices.push(await enroll(`chart-${attempt}-${i}`, 'charts'));
      const ends = await Promise.all(devices.map(async (d) => Date.parse((await openssl('x509', '-in', d.crt, '-noout', '-enddate')).stdout.trim().replace(/^notAfter=/, ''))));
      const days = [...new Set(ends.map((t) => Math.floor(t / DAY) * DAY))];
      const expiringBefore = await Promise.all(days.map((d) => bar('chart-expiring', d)));
      await overview();
      if (Math.floor(Date.now() / HOUR) * HOUR !== hour && attempt < 2) continue;
      expect(await bar('chart-enrollments', hour)).toBe(before.hour + 3);
      expect(await total('chart-enrollments')).toBe(before.total + 3);
      // the profile's 30 days: inside the 90 days; one or two UTC days if midnight passed between the enrollments
      expect((await Promise.all(days.map((d) => bar('chart-expiring', d)))).reduce((a, b) => a + b, 0)).toBe(expiringBefore.reduce((a, b) => a + b, 0) + 3);
      expect(await page.locator('#chart-enrollments title').last().textContent()).toMatch(/UTC: \d+ issued$/);
      break;
    }
    expect(await page.locator('h2:has-text("Enrollments per hour")').innerText()).toMatch(/\(\d+\)$/);
    await shot(page, '1b-overview-charts');
    // on a phone the charts shrink to the screen's width
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate<boolean>(`[...document.querySelectorAll('svg.chart')].every((e) => e.getBoundingClientRect().right <= window.innerWidth)`)).toBe(true);
    await shot(page, '1b-overview-charts-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
    expect(messages.filter((m) => /Content Security Policy|Refused/i.test(m))).toEqual([]);
  });

  it('a page still loading when the operator moves on never lands over the page navigated to after it', async () => {
    // the devices list is held (a slow store, say) while the operator goes on to the overview
    const DEVICES = /\/console\/api\/v1\/devices(\?[^/]*)?$/;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let asked!: () => void;
    const devicesAsked = new Promise<void>((r) => (asked = r));
    let answered!: () => void;
    const devicesAnswered = new Promise<void>((r) => (answered = r));
    // finished: the answer's body is in the page, so the late page's render is a task or two away
    page.on('requestfinished', (r) => {
      if (DEVICES.test(r.url())) answered();
    });
    await page.route(DEVICES, async (route) => {
      asked();
      await held;
      await route.continue();
    });
    try {
      await page.goto(`${base}/console/#/devices`);
      await devicesAsked; // the devices page is loading
      await page.goto(`${base}/console/#/overview`);
      await page.locator('#chart-expiring').waitFor();
      release();
      await devicesAnswered;
      // the late devices page renders into its own view, detached: it must not show up within 3 s
      const landed = await page
        .locator('#device-list, #no-devices')
        .waitFor({ timeout: 3000 })
        .then(
          () => true,
          () => false,
        );
      expect(landed).toBe(false);
      expect(await page.locator('#chart-expiring').count()).toBe(1);
      expect(await page.locator('#by-state').count()).toBe(1);
    } finally {
      release();
      await page.unroute(DEVICES);
    }
  });

  it('finds a certificate by serial as openssl prints it, shows it decoded, and revokes it with a reason after a confirmation: OCSP says revoked', async () => {
    const d = await enroll('ini-1', 'initech');
    await page.goto(`${base}/console/#/certificates`);
    await page.locator('#find-serial').fill(d.serial);
    await page.locator('#serial-find button[type=submit]').click();
    await page.locator('#certificate-fields').waitFor();
    const fields = await page.locator('#certificate-fields').innerText();
    expect(fields).toMatch(/subject\s+O=initech, CN=ini-1/);
    expect(fields).toMatch(/extended key usage\s+clientAuth \(1\.3\.6\.1\.5\.5\.7\.3\.2\)/);
    expect(fields).toMatch(/public key\s+ec prime256v1/);
    expect(await page.locator('#certificate-pem').innerText()).toContain('-----BEGIN CERTIFICATE-----');
    await page.locator('#action-revoke').click();
    await page.locator('#revoke-reason').selectOption('keyCompromise');
    const serial = await page.locator('#certificate-serial').innerText();
    expect(await page.locator('#confirm-text').innerText()).toBe(
      `Revoke certificate ${serial} of ini-1 (keyCompromise): relying parties see it revoked at the next OCSP answer and CRL. This cannot be undone.`,
    );
    await shot(page, '9-certificate-confirm-revoke');
    await page.locator('#confirm-action').click();
    await page.locator('#action-result').waitFor();
    expect(await page.locator('#action-result').innerText()).toBe('Revoked (keyCompromise).');
    expect(await page.locator('#action-revoke').count()).toBe(0);
    await shot(page, '10-certificate-revoked');
    await expectOcsp(d, 'revoked', 'keyCompromise');
    // the device's certificates, listed by device id
    await page.goto(`${base}/console/#/certificates`);
    await page.locator('#find-device').fill('ini-1');
    await page.locator('#device-find button[type=submit]').click();
    await page.locator('#certificate-list').waitFor();
    expect(await page.locator('#certificate-list').innerText()).toContain('revoked (keyCompromise)');
  });

  it('approves a request waiting in the queue after a confirmation: the device gets its certificate when it asks again', async () => {
    const secret = await register('ini-2', 'initech', 'api');
    const key = tmp.file('keys/ini-2.key');
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    const csrFile = tmp.write('req/ini-2.b64', await csrB64(key, '/CN=ini-2'));
    const ask = () => curl(`${svc.est}/manual/simpleenroll`, ['-H', 'Content-Type: application/pkcs10', '--data-binary', `@${csrFile}`, '-u', `ini-2:${secret}`]);
    expect((await ask()).status).toBe(202);
    await page.goto(`${base}/console/#/approvals`);
    await page.locator('#request-list').waitFor();
    expect(await page.locator('#request-list').innerText()).toContain('ini-2');
    await page.locator('#approve-ini-2').click();
    expect(await page.locator('#confirm-text').innerText()).toBe('Approve the enroll request of ini-2 (label manual): the device gets its certificate when it asks again.');
    await shot(page, '11-approvals-confirm');
    await page.locator('#confirm-action').click();
    await page.locator('#action-result').waitFor();
    expect(await page.locator('#action-result').innerText()).toBe('Request of ini-2: approved.');
    expect(await page.locator('#no-requests').count()).toBe(1);
    await shot(page, '12-approvals-empty');
    expect((await ask()).status).toBe(200);
    expect(await stateInStore('ini-2')).toBe('active');
  });

  it('reads the audit log filtered by device and type, and verifies the chain chunk by chunk to 100%: valid', async () => {
    await page.goto(`${base}/console/#/audit`);
    await page.locator('#audit-list').waitFor();
    await page.locator('#audit-device').fill('acme-1');
    await page.locator('#audit-type').fill('device.');
    await page.locator('#audit-filter button[type=submit]').click();
    await page.locator('#audit-list:has-text("device.retired")').waitFor();
    const rows = await page.locator('#audit-list tbody tr').allInnerTexts();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) expect(r).toMatch(/\tdevice\.[a-z-]+\t[\s\S]*\tacme-1\t/);
    await shot(page, '13-audit-filtered');
    // small chunks, so this short chain takes several calls, as a long one does with the default chunk
    const chunks: string[] = [];
    let counting = true;
    page.on('response', (r) => void (counting && r.url().includes('/audit/verify') && chunks.push(r.url())));
    await page.goto(`${base}/console/#/audit?chunk=5&all=1`);
    await page.locator('#verify-chain').click();
    await page.locator('#verify-status.notice').waitFor();
    counting = false;
    const status = await page.locator('#verify-status').innerText();
    expect(status).toMatch(/^100% — chain valid: (\d+) records, last hash [0-9a-f]{64}\.$/);
    const records = Number(/valid: (\d+) records/.exec(status)![1]);
    expect(records).toBeGreaterThan(10);
    expect(chunks.length).toBe(Math.ceil(records / 5));
    expect(await page.evaluate<number[]>(`[document.getElementById('verify-progress').value, document.getElementById('verify-progress').max]`)).toEqual([records, records]);
    // the CLI's verdict over the same chain agrees (it may see records appended since, such as CRL publications)
    const cli = JSON.parse(await cliOk('audit', 'verify', '--json')) as { ok: boolean; records: number };
    expect(cli.ok).toBe(true);
    expect(cli.records).toBeGreaterThanOrEqual(records);
    await shot(page, '14-audit-verified');
  });

  it('searches devices by label on the server: only the devices with that label, combined with the other filters', async () => {
    await cliOk('devices', 'add', 'lab-1', '--owner', 'initech', '--label', 'manual');
    await cliOk('devices', 'add', 'lab-2', '--owner', 'initech');
    await page.goto(`${base}/console/#/devices`);
    await page.locator('#device-list').waitFor();
    await page.locator('#filter-label').fill('manual');
    await page.locator('#device-filter button[type=submit]').click();
    await page.locator('#device-list:not(:has-text("lab-2"))').waitFor();
    const rows = await page.locator('#device-list tbody tr').allInnerTexts();
    expect(rows.map((r) => r.split('\t')[0])).toEqual(['lab-1']);
    expect(rows[0]).toMatch(/^lab-1\tinitech\tregistered\tmanual\t/);
    expect(await page.evaluate<string>('location.hash')).toBe('#/devices?label=manual');
    await shot(page, '15-devices-label-search');
    await page.locator('#filter-state').selectOption('active');
    await page.locator('#device-filter button[type=submit]').click();
    await page.locator('#no-devices').waitFor();
  });

  it('a POST without the CSRF token is refused with 403 and changes nothing; with it, the same call works', async () => {
    const url = `${base}/console/api/v1/devices/acme-2/suspend`;
    const bare = await page.evaluate<{ status: number; body: string }>(
      `fetch(${JSON.stringify(url)}, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then(async (r) => ({ status: r.status, body: await r.text() }))`,
    );
    expect(bare.status).toBe(403);
    expect(JSON.parse(bare.body).error).toMatchObject({ code: 'forbidden', message: 'missing or wrong X-CSRF-Token header' });
    expect(await stateInStore('acme-2')).toBe('registered');
    const wrong = await page.evaluate<number>(
      `fetch(${JSON.stringify(url)}, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': 'x'.repeat(43) }, body: '{}' }).then((r) => r.status)`,
    );
    expect(wrong).toBe(403);
    // with the token, the same call goes through
    const csrf = await csrfOf(page);
    const ok = await page.evaluate<{ status: number; body: string }>(
      `fetch(${JSON.stringify(url)}, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': ${JSON.stringify(csrf)} }, body: '{}' }).then(async (r) => ({ status: r.status, body: await r.text() }))`,
    );
    expect(ok.status).toBe(200);
    expect(await stateInStore('acme-2')).toBe('suspended');
  });

  it('a form posted from another site is refused (403) and changes nothing', async () => {
    // the attacker's page: another origin, a form that posts itself to the console at once
    const evil = http.createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(
        `<form id="f" method="POST" action="${base}/console/api/v1/devices/acme-2/retire" enctype="text/plain"><input name='{"a":"' value='"}'></form><script>document.getElementById('f').submit()</script>`,
      );
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', () => resolve()));
    try {
      const statuses: number[] = [];
      const attacked = await context.newPage();
      attacked.on('response', (r) => {
        if (r.url().endsWith('/retire')) statuses.push(r.status());
      });
      await attacked.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      await attacked.locator('body').waitFor();
      for (const end = Date.now() + 15_000; statuses.length === 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
      expect(statuses).toEqual([403]);
      await attacked.close();
    } finally {
      evil.close();
    }
    expect(await stateInStore('acme-2')).toBe('suspended');
  });

  it('sign-out ends the session: the page asks to sign in and the old cookie is refused', async () => {
    const cookie = (await context.cookies()).find((c) => c.name === 'dca_console')!.value;
    await page.locator('#sign-out').click();
    await page.locator('#signin').waitFor();
    await shot(page, '6-signed-out');
    expect((await context.cookies()).filter((c) => c.name === 'dca_console')).toEqual([]);
    const r = await curl(`${base}/console/api/v1/devices`, ['-H', `Cookie: dca_console=${cookie}`]);
    expect(r.status).toBe(401);
  });
});

describe('an owner-scoped session', () => {
  it("sees its owner's devices only, and cannot see or act on another owner's device by direct calls either", async () => {
    const { context, page } = await signIn(acmeToken);
    try {
      expect(await page.locator('#scope').innerText()).toBe('owner:acme');
      await page.locator('#devices-total .big').waitFor();
      expect(await page.locator('#devices-total .big').innerText()).toBe('2');
      expect(await page.locator('#pending-approvals').count()).toBe(0);
      // the charts count the whole fleet: a note instead, and the API refuses the owner's cookie
      expect(await page.locator('#charts-operator-only').count()).toBe(1);
      expect(await page.locator('svg.chart').count()).toBe(0);
      for (const chart of ['enrollments', 'expiring']) expect(await page.evaluate<number>(`fetch('/console/api/overview/${chart}').then((r) => r.status)`)).toBe(403);
      await page.goto(`${base}/console/#/devices`);
      await page.locator('#device-list').waitFor();
      const list = await page.locator('#device-list').innerText();
      expect(list).toContain('acme-2');
      expect(list).not.toContain('globex-1');
      await shot(page, '5-owner-devices');
      // the audit log is the operator's: no link, and the page shows the API's refusal
      expect(await page.locator('#nav-audit').count()).toBe(0);
      await page.goto(`${base}/console/#/audit`);
      await page.locator('.error').waitFor();
      expect(await page.locator('.error').innerText()).toMatch(/^403 forbidden: the audit log is for operator scope only/);
      expect(await page.evaluate<number>(`fetch('/console/api/v1/audit/verify').then((r) => r.status)`)).toBe(403);
      await page.goto(`${base}/console/#/devices/globex-1`);
      await page.locator('.error').waitFor();
      expect(await page.locator('.error').innerText()).toBe('404 not-found: no device globex-1');

      const csrf = await csrfOf(page);
      const get = await page.evaluate<number>(`fetch('/console/api/v1/devices/globex-1').then((r) => r.status)`);
      const audit = await page.evaluate<number>(`fetch('/console/api/devices/globex-1/audit').then((r) => r.status)`);
      const retire = await page.evaluate<number>(
        `fetch('/console/api/v1/devices/globex-1/retire', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': ${JSON.stringify(csrf)} }, body: '{}' }).then((r) => r.status)`,
      );
      expect({ get, audit, retire }).toEqual({ get: 404, audit: 404, retire: 404 });
      expect(await stateInStore('globex-1')).toBe('registered');
    } finally {
      await context.close();
    }
  });

  it('gets a new one-time secret for its own device after a confirmation, shown once: EST refuses the old secret and accepts the new one', async () => {
    const oldSecret = await register('acme-3', 'acme', 'api');
    const { context, page } = await signIn(acmeToken);
    try {
      await page.goto(`${base}/console/#/devices/acme-3`);
      await page.locator('#action-secret').click();
      expect(await page.locator('#confirm-text').innerText()).toBe(
        'New secret acme-3: makes a new one-time enrollment secret, shown once on this page; the current secret stops working and pending approval requests are cancelled; 0 certificates stay valid.',
      );
      await shot(page, '7-device-confirm-secret');
      await page.locator('#confirm-action').click();
      await page.locator('#new-secret').waitFor();
      const secret = await page.locator('#new-secret').innerText();
      expect(secret).not.toBe(oldSecret);
      expect(await page.locator('#history').innerText()).toContain('device.secret-replaced');
      expect(await page.locator('#history').innerText()).not.toContain(secret);
      await shot(page, '8-device-new-secret');
      // shown once: the page drawn again has no secret on it
      await page.reload();
      await page.locator('#history').waitFor();
      expect(await page.locator('#new-secret').count()).toBe(0);

      const key = tmp.file('keys/acme-3.key');
      await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
      const csr = await csrB64(key, '/CN=acme-3');
      expect((await postEst('simpleenroll', csr, { user: ['acme-3', oldSecret] })).status).toBe(401);
      expect((await postEst('simpleenroll', csr, { user: ['acme-3', secret] })).status).toBe(200);
      expect(await stateInStore('acme-3')).toBe('active');
    } finally {
      await context.close();
    }
  });
});
