import * as fs from 'node:fs';
import * as path from 'node:path';
import { Browser, hasChromium, launchChromium } from '../helpers/browser';
import { Device, Reply, header, openssl, pkiClient } from '../helpers/pki-client';
import { REPO_ROOT, RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Console sign-in with a pinned operator client certificate, against the built service: curl --cert
 * exchanges the certificate pinned in admin.clientCerts for the console's session cookie, which then acts
 * with the operator's scope under the same CSRF and sign-out rules as a token session; no certificate,
 * a certificate not pinned and a device certificate of this CA are refused with the reason and get no
 * cookie. Headless Chromium presents the certificate (Playwright's clientCertificates) and signs in with
 * the "Sign in with certificate" button; screenshots in test-results/console/.
 */

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let operatorToken: string;
let operator: { crt: string; key: string };
let stranger: { crt: string; key: string };
let device: Device;
let base: string;

const SHOTS = path.join(REPO_ROOT, 'test-results', 'console');
const { curl, cliOk, enroll, register, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, issuingPem: () => issuingPem, operatorToken: () => operatorToken });
const stateInStore = async (id: string): Promise<string> => (JSON.parse(await cliOk('devices', 'show', id, '--json')) as { state: string }).state;

/** selfSigned: an EC P-256 key and a self-signed certificate for it, made by openssl as an operator would. */
async function selfSigned(name: string): Promise<{ crt: string; key: string }> {
  const key = tmp.file(`operators/${name}.key`);
  const crt = tmp.file(`operators/${name}.crt`);
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', crt, '-subj', `/CN=${name}`, '-days', '30');
  return { crt, key };
}

/** certificateSignIn: POST /console/api/session/certificate with curl, presenting the given client certificate (or none). */
const certificateSignIn = (cert?: { crt: string; key: string }): Promise<Reply> =>
  curl(`${base}/console/api/session/certificate`, [...(cert ? ['--cert', cert.crt, '--key', cert.key] : []), '-H', 'Content-Type: application/json', '--data-binary', '{}']);

beforeAll(async () => {
  assertBuilt();
  fs.mkdirSync(SHOTS, { recursive: true });
  tmp = makeTmpDir('device-ca-console-cert-');
  operator = await selfSigned('operator-alice');
  stranger = await selfSigned('someone-else');
  svc = await startService({ configYaml: ['admin:', `  clientCerts: [${JSON.stringify(operator.crt)}]`, ''].join('\n') });
  base = `https://localhost:${svc.httpsPort}`;
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  device = await enroll('acme-1', 'acme');
  await register('globex-1', 'globex', 'api');
}, 120_000);

afterAll(() => teardown());

describe('curl --cert', () => {
  it("the pinned operator certificate gets the session cookie; the session has the operator's scope, needs the CSRF token, and ends at sign-out", async () => {
    const r = await certificateSignIn(operator);
    expect(r.status).toBe(201);
    const body = JSON.parse(r.text) as { csrf: string; scope: string };
    expect(body.scope).toBe('operator');
    const setCookie = header(r, 'set-cookie') ?? '';
    expect(setCookie).toMatch(/^dca_console=dcs_[A-Za-z0-9_-]{43}; /);
    expect(setCookie.split('; ').slice(1).sort()).toEqual(expect.arrayContaining(['HttpOnly', 'Path=/console', 'SameSite=Strict', 'Secure']));
    const cookie = ['-H', `Cookie: ${setCookie.split(';')[0]}`];

    // operator scope: every owner's devices, and the operator-only audit log
    const list = await curl(`${base}/console/api/v1/devices`, cookie);
    expect(list.status).toBe(200);
    expect((JSON.parse(list.text) as { items: { id: string }[] }).items.map((d) => d.id).sort()).toEqual(['acme-1', 'globex-1']);
    expect((await curl(`${base}/console/api/v1/audit?limit=1`, cookie)).status).toBe(200);

    // the cookie alone does not change anything: the CSRF token is needed, as for a token session
    const post = (csrf?: string) =>
      curl(`${base}/console/api/v1/devices/globex-1/suspend`, [...cookie, ...(csrf ? ['-H', `X-CSRF-Token: ${csrf}`] : []), '-H', 'Content-Type: application/json', '--data-binary', '{}']);
    const bare = await post();
    expect({ status: bare.status, message: (JSON.parse(bare.text) as { error: { message: string } }).error.message }).toEqual({ status: 403, message: 'missing or wrong X-CSRF-Token header' });
    expect(await stateInStore('globex-1')).toBe('registered');
    expect((await post(body.csrf)).status).toBe(200);
    expect(await stateInStore('globex-1')).toBe('suspended');
    // the audit log names the certificate as the actor
    const history = await curl(`${base}/console/api/devices/globex-1/audit`, cookie);
    const records = (JSON.parse(history.text) as { items: { type: string; actor: string }[] }).items;
    expect(records.find((a) => a.type === 'device.suspended')?.actor).toMatch(/^cert:[0-9A-F]{16}$/);

    const out = await curl(`${base}/console/api/session/sign-out`, [...cookie, '-H', `X-CSRF-Token: ${body.csrf}`, '-H', 'Content-Type: application/json', '--data-binary', '{}']);
    expect(out.status).toBe(200);
    expect((await curl(`${base}/console/api/v1/devices`, cookie)).status).toBe(401);
  });

  it('no certificate is 401; a certificate not pinned and a device certificate of this CA are 403 with the reason; none gets a cookie', async () => {
    const replies = await Promise.all([certificateSignIn(), certificateSignIn(stranger), certificateSignIn({ crt: device.crt, key: device.key })]);
    const seen = replies.map((r) => ({ status: r.status, message: (JSON.parse(r.text) as { error: { message: string } }).error.message, cookie: header(r, 'set-cookie') ?? null }));
    expect(seen).toEqual([
      { status: 401, message: 'no client certificate: the browser sent none (choose the operator certificate when it asks, or sign in with a token)', cookie: null },
      { status: 403, message: expect.stringMatching(/^client certificate SHA-256 [0-9A-F]{64} is not pinned for an operator \(admin\.clientCerts\)$/), cookie: null },
      { status: 403, message: 'this is a device certificate (device acme-1): only operator certificates pinned in admin.clientCerts sign in to the console', cookie: null },
    ]);
  });
});

describe('headless Chromium with the operator certificate', () => {
  let browser: Browser;
  beforeAll(async () => {
    if (!hasChromium()) throw new Error('/usr/bin/chromium is missing: run scripts/install-test-deps.sh (Debian package chromium)');
    browser = await launchChromium();
  });
  afterAll(() => browser?.close());

  it('"Sign in with certificate" signs in as the operator; without a certificate the form shows the reason', async () => {
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 900 },
      clientCertificates: [{ origin: base, certPath: operator.crt, keyPath: operator.key }],
    });
    try {
      const page = await context.newPage();
      await page.goto(`${base}/console/`);
      await page.locator('#signin-certificate').waitFor();
      await page.screenshot({ path: path.join(SHOTS, '16-sign-in-certificate.png'), fullPage: true });
      await page.locator('#signin-certificate').click();
      await page.locator('#scope').waitFor();
      expect(await page.locator('#scope').innerText()).toBe('operator');
      await page.locator('#devices-total .big').waitFor();
      expect(await page.locator('#devices-total .big').innerText()).toBe('2');
      await page.screenshot({ path: path.join(SHOTS, '17-signed-in-certificate.png'), fullPage: true });
      expect((await context.cookies()).filter((c) => c.name === 'dca_console').map((c) => c.httpOnly)).toEqual([true]);
      await page.locator('#sign-out').click();
      await page.locator('#signin').waitFor();
      expect((await context.cookies()).filter((c) => c.name === 'dca_console')).toEqual([]);
    } finally {
      await context.close();
    }

    const bare = await browser.newContext({ ignoreHTTPSErrors: true });
    try {
      const page = await bare.newPage();
      await page.goto(`${base}/console/`);
      await page.locator('#signin-certificate').click();
      await page.locator('#signin-error .error').waitFor();
      expect(await page.locator('#signin-error .error').innerText()).toMatch(/^401 unauthenticated: no client certificate: the browser sent none/);
      expect(await page.locator('#scope').count()).toBe(0);
    } finally {
      await bare.close();
    }
  });
});
