import * as fs from 'node:fs';

/**
 * browser: headless Chromium from Debian (package chromium, /usr/bin/chromium) driven by playwright-core,
 * which downloads no browser of its own. playwright-core is loaded at run time and typed here by the few
 * calls the tests make, so the type check does not depend on its declaration files.
 */

export const CHROMIUM = '/usr/bin/chromium';

export interface BrowserResponse {
  status(): number;
  headers(): Record<string, string>;
  url(): string;
}

export interface Locator {
  click(): Promise<void>;
  fill(value: string): Promise<void>;
  selectOption(value: string): Promise<unknown>;
  textContent(): Promise<string | null>;
  innerText(): Promise<string>;
  allInnerTexts(): Promise<string[]>;
  waitFor(o?: { state?: 'attached' | 'detached' | 'visible' | 'hidden'; timeout?: number }): Promise<void>;
  count(): Promise<number>;
  getAttribute(name: string): Promise<string | null>;
  last(): Locator;
}

export interface Page {
  goto(url: string): Promise<BrowserResponse | null>;
  reload(): Promise<BrowserResponse | null>;
  locator(selector: string): Locator;
  screenshot(o: { path: string; fullPage?: boolean }): Promise<Buffer>;
  evaluate<T>(fn: string): Promise<T>;
  on(event: 'response', fn: (r: BrowserResponse) => void): void;
  on(event: 'requestfinished', fn: (r: { url(): string }) => void): void;
  on(event: 'console' | 'pageerror', fn: (m: { toString(): string }) => void): void;
  setViewportSize(s: { width: number; height: number }): Promise<void>;
  /** route: hold or change the page's requests whose URL matches (a fault a real server is not made to show: a slow answer) */
  route(url: RegExp, handler: (route: { continue(): Promise<void> }) => Promise<void> | void): Promise<void>;
  unroute(url: RegExp): Promise<void>;
  close(): Promise<void>;
}

export interface Cookie {
  name: string;
  value: string;
  domain: string;
  path: string;
  httpOnly: boolean;
  secure: boolean;
  sameSite: 'Strict' | 'Lax' | 'None';
  expires: number;
}

export interface BrowserContext {
  newPage(): Promise<Page>;
  cookies(): Promise<Cookie[]>;
  request: { post(url: string, o: { headers?: Record<string, string>; data?: string; failOnStatusCode?: boolean }): Promise<{ status(): number; text(): Promise<string> }> };
  close(): Promise<void>;
}

export interface Browser {
  /** newContext: clientCertificates are the TLS client certificates the browser presents to an origin (Playwright 1.46+) */
  newContext(o: { ignoreHTTPSErrors?: boolean; viewport?: { width: number; height: number }; clientCertificates?: { origin: string; certPath: string; keyPath: string }[] }): Promise<BrowserContext>;
  close(): Promise<void>;
}

/** hasChromium: the Debian browser is installed (scripts/install-test-deps.sh installs it). */
export function hasChromium(): boolean {
  return fs.existsSync(CHROMIUM);
}

/** launchChromium: the system Chromium, headless; --no-sandbox only as root, where Chromium refuses its sandbox. */
export async function launchChromium(): Promise<Browser> {
  const name: string = 'playwright-core'; // a variable: loaded at run time, see the file comment
  const pw = (await import(name)) as { chromium: { launch(o: { executablePath: string; headless: boolean; args: string[] }): Promise<Browser> } };
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  return pw.chromium.launch({ executablePath: CHROMIUM, headless: true, args: root ? ['--no-sandbox'] : [] });
}
