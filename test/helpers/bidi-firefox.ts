import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './ports';

/**
 * bidi-firefox: headless Firefox ESR from Debian (package firefox-esr) driven over WebDriver BiDi
 * (W3C WebDriver BiDi: session, browser, browsingContext, script, storage modules) with the WebSocket
 * client bundled in playwright-core. Playwright 1.65's own BiDi Firefox launcher starts firefox-esr 153 but
 * its newContext sends emulation.setMediaFeaturesOverride, which that Firefox does not know ("unknown
 * command"), so the tests drive Firefox here. It implements the few calls the console scenario makes
 * (console-browser-scenario.ts), with the same names and meanings as Playwright's, so the scenario runs
 * unchanged in Chromium (Playwright) and in Firefox (this file). Selectors are CSS only.
 */

export const FIREFOX = '/usr/bin/firefox-esr';

/** hasFirefox: the Debian browser is installed (scripts/install-test-deps.sh installs it). */
export function hasFirefox(): boolean {
  return fs.existsSync(FIREFOX);
}

interface WsLike {
  on(event: 'message', fn: (data: Buffer) => void): void;
  on(event: 'open' | 'close', fn: () => void): void;
  on(event: 'error', fn: (e: Error) => void): void;
  send(data: string): void;
  close(): void;
}

/** RemoteValue: a WebDriver BiDi serialized value (§ script.RemoteValue), the kinds the scenario reads. */
interface RemoteValue {
  type: string;
  value?: unknown;
}

const TIMEOUT_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** BiDiConnection: one WebSocket, commands by id, events to listeners. */
class BiDiConnection {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; method: string }>();

  constructor(private readonly ws: WsLike) {
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString('utf8')) as { id?: number; type: string; result?: Record<string, unknown>; error?: string; message?: string };
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === 'error') p.reject(new Error(`${p.method}: ${m.error}: ${m.message}`));
      else p.resolve(m.result ?? {});
    });
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error(`${p.method}: the connection to Firefox closed`));
      this.pending.clear();
    });
  }

  send<T = Record<string, unknown>>(method: string, params: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: Record<string, unknown>) => void, reject, method });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.ws.close();
  }
}

/** fromRemote: a serialized value back into JavaScript (primitives, arrays, plain objects). */
function fromRemote(v: RemoteValue): unknown {
  switch (v.type) {
    case 'undefined':
    case 'null':
      return v.type === 'null' ? null : undefined;
    case 'string':
    case 'boolean':
      return v.value;
    case 'number':
      return typeof v.value === 'string' ? Number(v.value) : v.value;
    case 'array':
      return (v.value as RemoteValue[]).map(fromRemote);
    case 'object':
      return Object.fromEntries((v.value as [string | RemoteValue, RemoteValue][]).map(([k, x]) => [typeof k === 'string' ? k : String(fromRemote(k)), fromRemote(x)]));
    default:
      throw new Error(`bidi-firefox: cannot read a ${v.type} value`);
  }
}

export interface FirefoxCookie {
  name: string;
  value: string;
  domain: string;
  path: string;
  httpOnly: boolean;
  secure: boolean;
  sameSite: 'Strict' | 'Lax' | 'None';
  expires: number;
}

/** FirefoxLocator: the first element matching a CSS selector, looked up again on every call (as Playwright's locators are). */
export class FirefoxLocator {
  constructor(
    private readonly page: FirefoxPage,
    private readonly selector: string,
  ) {}

  /** call: fn(element, ...args) in the page once the element exists (auto-wait, as Playwright's actions do) */
  private async call<T>(fn: string, ...args: unknown[]): Promise<T> {
    await this.waitFor();
    return this.page.run<T>(`(sel, ...args) => (${fn})(document.querySelector(sel), ...args)`, this.selector, ...args);
  }

  async waitFor(o: { state?: 'attached' | 'detached' | 'visible' | 'hidden'; timeout?: number } = {}): Promise<void> {
    const want = o.state ?? 'visible';
    const deadline = Date.now() + (o.timeout ?? TIMEOUT_MS);
    for (;;) {
      const state = await this.page.run<string>(
        `(sel) => { const e = document.querySelector(sel); if (!e) return 'detached'; const r = e.getBoundingClientRect(); return r.width > 0 || r.height > 0 ? 'visible' : 'hidden'; }`,
        this.selector,
      );
      const ok = want === 'attached' ? state !== 'detached' : want === 'hidden' ? state !== 'visible' : state === want;
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`bidi-firefox: ${this.selector} not ${want} within ${o.timeout ?? TIMEOUT_MS} ms (it is ${state})`);
      await sleep(50);
    }
  }

  click(): Promise<void> {
    return this.call('(e) => { e.scrollIntoView({ block: "center" }); e.click(); }');
  }

  fill(value: string): Promise<void> {
    return this.call('(e, v) => { e.focus(); e.value = v; e.dispatchEvent(new Event("input", { bubbles: true })); e.dispatchEvent(new Event("change", { bubbles: true })); }', value);
  }

  selectOption(value: string): Promise<void> {
    return this.call('(e, v) => { e.value = v; e.dispatchEvent(new Event("input", { bubbles: true })); e.dispatchEvent(new Event("change", { bubbles: true })); }', value);
  }

  innerText(): Promise<string> {
    return this.call<string>('(e) => e.innerText');
  }

  count(): Promise<number> {
    return this.page.run<number>('(sel) => document.querySelectorAll(sel).length', this.selector);
  }
}

/** FirefoxPage: one top-level browsing context (a tab) in the context's user context. */
export class FirefoxPage {
  constructor(
    private readonly conn: BiDiConnection,
    readonly id: string,
  ) {}

  async goto(url: string): Promise<void> {
    await this.conn.send('browsingContext.navigate', { context: this.id, url, wait: 'complete' });
  }

  async reload(): Promise<void> {
    await this.conn.send('browsingContext.reload', { context: this.id, wait: 'complete' });
  }

  locator(selector: string): FirefoxLocator {
    return new FirefoxLocator(this, selector);
  }

  async setViewportSize(s: { width: number; height: number }): Promise<void> {
    await this.conn.send('browsingContext.setViewport', { context: this.id, viewport: s });
  }

  /** screenshot: the whole document (origin 'document') or the viewport, as PNG, written to path. */
  async screenshot(o: { path: string; fullPage?: boolean }): Promise<Buffer> {
    const r = await this.conn.send<{ data: string }>('browsingContext.captureScreenshot', { context: this.id, origin: o.fullPage ? 'document' : 'viewport' });
    const png = Buffer.from(r.data, 'base64');
    fs.writeFileSync(o.path, png);
    return png;
  }

  /** evaluate: a JavaScript expression in the page; a promise is awaited; the value comes back serialized. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.conn.send<{ type: string; result?: RemoteValue; exceptionDetails?: { text: string } }>('script.evaluate', {
      expression,
      target: { context: this.id },
      awaitPromise: true,
      resultOwnership: 'none',
      serializationOptions: { maxObjectDepth: 5 },
    });
    if (r.type === 'exception') throw new Error(`bidi-firefox: ${r.exceptionDetails?.text ?? 'exception'} in ${expression.slice(0, 80)}`);
    return fromRemote(r.result!) as T;
  }

  /** run: fn(...args) in the page, the arguments passed as serialized values. */
  async run<T>(fn: string, ...args: unknown[]): Promise<T> {
    const r = await this.conn.send<{ type: string; result?: RemoteValue; exceptionDetails?: { text: string } }>('script.callFunction', {
      functionDeclaration: fn,
      arguments: args.map((a) => (typeof a === 'string' ? { type: 'string', value: a } : typeof a === 'number' ? { type: 'number', value: a } : { type: 'undefined' })),
      target: { context: this.id },
      awaitPromise: true,
      resultOwnership: 'none',
    });
    if (r.type === 'exception') throw new Error(`bidi-firefox: ${r.exceptionDetails?.text ?? 'exception'}`);
    return fromRemote(r.result!) as T;
  }

  async close(): Promise<void> {
    await this.conn.send('browsingContext.close', { context: this.id });
  }
}

/** FirefoxContext: a user context (its own cookie jar, as a Playwright browser context). */
export class FirefoxContext {
  constructor(
    private readonly conn: BiDiConnection,
    private readonly userContext: string,
    private readonly viewport: { width: number; height: number } | undefined,
  ) {}

  async newPage(): Promise<FirefoxPage> {
    const r = await this.conn.send<{ context: string }>('browsingContext.create', { type: 'tab', userContext: this.userContext });
    const page = new FirefoxPage(this.conn, r.context);
    if (this.viewport) await page.setViewportSize(this.viewport);
    return page;
  }

  async cookies(): Promise<FirefoxCookie[]> {
    const r = await this.conn.send<{ cookies: { name: string; value: RemoteValue; domain: string; path: string; httpOnly: boolean; secure: boolean; sameSite: string; expiry?: number }[] }>(
      'storage.getCookies',
      { partition: { type: 'storageKey', userContext: this.userContext } },
    );
    return r.cookies.map((c) => ({
      name: c.name,
      value: String(c.value.value),
      domain: c.domain,
      path: c.path,
      httpOnly: c.httpOnly,
      secure: c.secure,
      sameSite: (c.sameSite.charAt(0).toUpperCase() + c.sameSite.slice(1)) as FirefoxCookie['sameSite'],
      expires: c.expiry ?? -1,
    }));
  }

  async close(): Promise<void> {
    await this.conn.send('browser.removeUserContext', { userContext: this.userContext });
  }
}

/** FirefoxBrowser: one headless firefox-esr process and its BiDi session. */
export class FirefoxBrowser {
  constructor(
    private readonly conn: BiDiConnection,
    private readonly proc: ChildProcess,
    private readonly profile: string,
  ) {}

  /** newContext: a new user context; certificate errors are ignored for the whole session (acceptInsecureCerts) */
  async newContext(o: { ignoreHTTPSErrors?: boolean; viewport?: { width: number; height: number } } = {}): Promise<FirefoxContext> {
    if (o.ignoreHTTPSErrors === false) throw new Error('bidi-firefox: the session accepts insecure certificates; ignoreHTTPSErrors: false is not offered');
    const r = await this.conn.send<{ userContext: string }>('browser.createUserContext', {});
    return new FirefoxContext(this.conn, r.userContext, o.viewport);
  }

  async close(): Promise<void> {
    await this.conn.send('browser.close', {}).catch(() => undefined);
    this.conn.close();
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      const t = setTimeout(() => this.proc.pid && process.kill(this.proc.pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

/**
 * launchFirefox: firefox-esr --headless with a fresh profile (HOME too: Firefox refuses a HOME another user
 * owns) and WebDriver BiDi on a free loopback port; waits for "WebDriver BiDi listening on ws://...",
 * opens a session that accepts the test service's certificate, and returns the browser.
 */
export async function launchFirefox(): Promise<FirefoxBrowser> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-firefox-'));
  // no first-run pages, updates or telemetry: nothing reaches the network but the pages a test opens
  fs.writeFileSync(
    path.join(profile, 'user.js'),
    [
      'user_pref("browser.shell.checkDefaultBrowser", false);',
      'user_pref("browser.startup.homepage_override.mstone", "ignore");',
      'user_pref("app.update.enabled", false);',
      'user_pref("datareporting.policy.dataSubmissionEnabled", false);',
      'user_pref("toolkit.telemetry.enabled", false);',
      'user_pref("network.captive-portal-service.enabled", false);',
      'user_pref("browser.safebrowsing.malware.enabled", false);',
      'user_pref("browser.safebrowsing.phishing.enabled", false);',
      'user_pref("extensions.update.enabled", false);',
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const proc = spawn(FIREFOX, ['--headless', '--no-remote', '--profile', profile, `--remote-debugging-port=${port}`, 'about:blank'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: profile, MOZ_CRASHREPORTER_DISABLE: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`firefox-esr did not start WebDriver BiDi within 60 s:\n${log.slice(-2000)}`)), 60_000);
    proc.stderr!.on('data', (d: Buffer) => {
      log += d.toString('utf8');
      const m = /WebDriver BiDi listening on (ws:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`firefox-esr exited (${code}) before WebDriver BiDi started:\n${log.slice(-2000)}`));
    });
  }).catch((e: unknown) => {
    if (proc.pid && proc.exitCode === null) process.kill(proc.pid, 'SIGKILL');
    fs.rmSync(profile, { recursive: true, force: true });
    throw e;
  });
  proc.stderr!.resume();
  const name: string = 'playwright-core/lib/utilsBundle'; // playwright-core's bundled `ws`, loaded at run time (see browser.ts)
  const { ws: WebSocket } = (await import(name)) as { ws: new (url: string) => WsLike };
  const ws = new WebSocket(`${url.replace(/\/$/, '')}/session`);
  await new Promise<void>((resolve, reject) => {
    ws.on('open', () => resolve());
    ws.on('error', (e) => reject(e));
  });
  const conn = new BiDiConnection(ws);
  await conn.send('session.new', { capabilities: { alwaysMatch: { acceptInsecureCerts: true } } });
  return new FirefoxBrowser(conn, proc, profile);
}
