import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasFirefox, launchFirefox } from '../helpers/bidi-firefox';
import { hasChromium, launchChromium } from '../helpers/browser';
import { Device, pkiClient } from '../helpers/pki-client';
import { REPO_ROOT, RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The console's main path, one scenario run in each browser the issue names: headless Chromium (Debian
 * chromium, driven by playwright-core) and headless Firefox ESR (Debian firefox-esr, driven over WebDriver
 * BiDi by test/helpers/bidi-firefox.ts). An operator signs in with a token, finds a device by id prefix and
 * retires it (the store says retired, `openssl ocsp` says revoked, the overview's retired count goes up),
 * signs out (the old cookie is refused); an owner session sees its own devices only and cannot open or
 * retire another owner's, in the page or by a direct call with its cookie and CSRF token. The scenario
 * uses only what both drivers offer (ScenarioBrowser: CSS selectors, Playwright's names). Screenshots in
 * test-results/console/<browser>-*.png. console.test.ts goes through every page in Chromium.
 */

/** ScenarioBrowser: what the scenario needs of a browser; Playwright's Browser and FirefoxBrowser both are one. */
interface ScenarioLocator {
  click(): Promise<void>;
  fill(value: string): Promise<void>;
  innerText(): Promise<string>;
  waitFor(o?: { state?: 'attached' | 'detached' | 'visible' | 'hidden'; timeout?: number }): Promise<void>;
  count(): Promise<number>;
}
interface ScenarioPage {
  goto(url: string): Promise<unknown>;
  locator(selector: string): ScenarioLocator;
  screenshot(o: { path: string; fullPage?: boolean }): Promise<Buffer>;
  evaluate<T>(expression: string): Promise<T>;
}
interface ScenarioContext {
  newPage(): Promise<ScenarioPage>;
  cookies(): Promise<{ name: string; value: string; path: string; httpOnly: boolean; secure: boolean; sameSite: string }[]>;
  close(): Promise<void>;
}
interface ScenarioBrowser {
  newContext(o: { ignoreHTTPSErrors?: boolean; viewport?: { width: number; height: number } }): Promise<ScenarioContext>;
  close(): Promise<void>;
}

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let operatorToken: string;
let acmeToken: string;
let base: string;

const SHOTS = path.join(REPO_ROOT, 'test-results', 'console');
const { curl, cliOk, enroll, register, expectOcsp, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, issuingPem: () => issuingPem, operatorToken: () => operatorToken });
const stateInStore = async (id: string): Promise<string> => (JSON.parse(await cliOk('devices', 'show', id, '--json')) as { state: string }).state;

/** until: the element's text, once it satisfies ok (the page draws from API answers; both drivers poll the same way). */
async function until(l: ScenarioLocator, ok: (text: string) => boolean, what: string): Promise<string> {
  const deadline = Date.now() + 15_000;
  let text = '';
  for (;;) {
    if ((await l.count()) > 0) text = await l.innerText();
    if (ok(text)) return text;
    if (Date.now() > deadline) throw new Error(`waited for ${what}; the text is ${JSON.stringify(text.slice(0, 300))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const retiredCount = (byState: string): number => Number(/retired\s+(\d+)/.exec(byState)?.[1] ?? NaN);

beforeAll(async () => {
  assertBuilt();
  fs.mkdirSync(SHOTS, { recursive: true });
  tmp = makeTmpDir('device-ca-console-browsers-');
  svc = await startService({});
  base = `https://localhost:${svc.httpsPort}`;
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  acmeToken = (await cliOk('tokens', 'create', '--scope', 'owner:acme')).trim();
}, 120_000);

afterAll(() => teardown());

describe.each([
  ['chromium', hasChromium, launchChromium as () => Promise<ScenarioBrowser>, 'chromium (Debian package chromium)'],
  ['firefox', hasFirefox, launchFirefox as () => Promise<ScenarioBrowser>, 'firefox-esr (Debian package firefox-esr)'],
] as const)('the console in %s', (name, installed, launch, pkg) => {
  let browser: ScenarioBrowser;
  let enrolled: Device;
  const shot = (page: ScenarioPage, step: string) => page.screenshot({ path: path.join(SHOTS, `${name}-${step}.png`), fullPage: true });
  const id = (s: string) => `${name}-${s}`;

  beforeAll(async () => {
    if (!installed()) throw new Error(`${pkg} is missing: run scripts/install-test-deps.sh`);
    enrolled = await enroll(id('acme-1'), 'acme');
    await register(id('acme-2'), 'acme', 'api');
    await register(id('globex-1'), 'globex', 'api');
    browser = await launch();
  }, 120_000);
  afterAll(() => browser?.close());

  /** signIn: a fresh context (its own cookie jar) signed in with a token through the form. */
  async function signIn(token: string): Promise<{ context: ScenarioContext; page: ScenarioPage }> {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${base}/console/`);
    await page.locator('#token').fill(token);
    await page.locator('#signin button[type=submit]').click();
    await page.locator('#scope').waitFor();
    return { context, page };
  }

  it('an operator finds a device by id prefix and retires it: the store says retired, OCSP says revoked, the overview counts it; sign-out ends the session', async () => {
    const { context, page } = await signIn(operatorToken);
    try {
      expect(await page.locator('#scope').innerText()).toBe('operator');
      const cookies = (await context.cookies()).filter((c) => c.name === 'dca_console');
      expect(cookies.map((c) => ({ path: c.path, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite }))).toEqual([{ path: '/console', httpOnly: true, secure: true, sameSite: 'Strict' }]);
      expect(await page.evaluate<string>('document.cookie')).toBe('');
      const retiredBefore = retiredCount(await until(page.locator('#by-state'), (t) => /retired\s+\d+/.test(t), 'the overview'));
      await shot(page, '1-overview');

      await page.goto(`${base}/console/#/devices`);
      await page.locator('#device-list').waitFor();
      await page.locator('#filter-prefix').fill(id('acme-'));
      await page.locator('#device-filter button[type=submit]').click();
      const list = await until(page.locator('#device-list'), (t) => t.includes(id('acme-1')) && !t.includes(id('globex-1')), 'the search by id prefix');
      expect(list).toContain(id('acme-2'));
      await shot(page, '2-devices');
      await page.locator(`#device-list a[href="#/devices/${id('acme-1')}"]`).click();
      await until(page.locator('#certificates'), (t) => t.includes('valid'), "the device's certificates");
      expect(await page.locator('#device-id').innerText()).toBe(id('acme-1'));
      await page.locator('#action-retire').click();
      expect(await page.locator('#confirm-text').innerText()).toBe(`Retire ${id('acme-1')}: revokes 1 certificate (cessationOfOperation); the device can never enroll again. This cannot be undone.`);
      await shot(page, '3-confirm-retire');
      await page.locator('#confirm-action').click();
      expect(await until(page.locator('#action-result'), (t) => t !== '', 'the action result')).toContain('the device is now retired; 1 certificate changed');
      await shot(page, '4-retired');
      expect(await stateInStore(id('acme-1'))).toBe('retired');
      await expectOcsp(enrolled, 'revoked', 'cessationOfOperation');

      await page.goto(`${base}/console/#/overview`);
      await until(page.locator('#by-state'), (t) => retiredCount(t) === retiredBefore + 1, 'the retired count to go up by one');

      const cookie = cookies[0].value;
      await page.locator('#sign-out').click();
      await page.locator('#signin').waitFor();
      await shot(page, '5-signed-out');
      expect((await context.cookies()).filter((c) => c.name === 'dca_console')).toEqual([]);
      expect((await curl(`${base}/console/api/v1/devices`, ['-H', `Cookie: dca_console=${cookie}`])).status).toBe(401);
    } finally {
      await context.close();
    }
  });

  it("an owner session sees its own devices only and cannot open or retire another owner's, in the page or by a direct call", async () => {
    const { context, page } = await signIn(acmeToken);
    try {
      expect(await page.locator('#scope').innerText()).toBe('owner:acme');
      await page.goto(`${base}/console/#/devices`);
      const list = await until(page.locator('#device-list'), (t) => t.includes(id('acme-2')), "the owner's devices");
      expect(list).not.toContain('globex');
      await shot(page, '6-owner-devices');
      await page.goto(`${base}/console/#/devices/${id('globex-1')}`);
      expect(await until(page.locator('.error'), (t) => t !== '', 'the refusal')).toBe(`404 not-found: no device ${id('globex-1')}`);
      const csrf = await page.evaluate<string>(`fetch('/console/api/session').then((r) => r.json()).then((j) => j.csrf)`);
      const retire = await page.evaluate<number>(
        `fetch('/console/api/v1/devices/${id('globex-1')}/retire', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': ${JSON.stringify(csrf)} }, body: '{}' }).then((r) => r.status)`,
      );
      const get = await page.evaluate<number>(`fetch('/console/api/v1/devices/${id('globex-1')}').then((r) => r.status)`);
      expect({ get, retire }).toEqual({ get: 404, retire: 404 });
      expect(await stateInStore(id('globex-1'))).toBe('registered');
    } finally {
      await context.close();
    }
  });
});
