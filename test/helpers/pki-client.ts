import * as fs from 'node:fs';
import { ProcessResult, RunningService, runProcess } from './service-process';
import { TmpDir } from './tmp';

/**
 * pki-client holds what the interop tests do as a device and a relying party would, with curl and openssl
 * against the running service (EST enrollment by the README recipe, OCSP, CRL), so that the test files that
 * drive the service from outside share one copy of it instead of each keeping its own.
 */

/** must runs a program that has to succeed; a non-zero exit throws with its output, so helpers fail loudly. */
export async function must(file: string, args: string[], input?: string | Buffer): Promise<ProcessResult> {
  const r = await runProcess(file, args, { input });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}

/** openssl: `openssl <args>` that has to succeed (must). */
export const openssl = (...args: string[]): Promise<ProcessResult> => must('openssl', args);

/** opensslAny: openssl whose exit code is part of what the test checks; stdout and stderr together */
export const opensslAny = async (...args: string[]): Promise<{ code: number | null; out: string }> => {
  const r = await runProcess('openssl', args);
  return { code: r.code, out: r.stdout + r.stderr };
};

/** Reply is one HTTP reply as curl saw it: the status and headers of the last response head, the body. */
export interface Reply {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  text: string;
}

/** header: a reply header by name, whatever its case. */
export const header = (r: Reply, name: string): string | undefined => r.headers.get(name.toLowerCase());

/** Device is an enrolled device as the tests follow it: its key, its certificate and where it is checked. */
export interface Device {
  id: string;
  key: string;
  crt: string;
  /** serial as openssl prints it (upper-case hex) */
  serial: string;
  ocspUrl: string;
  crlUrl: string;
}

/** Crl is a CRL fetched from a certificate's CRL distribution point, verified and printed by openssl. */
export interface Crl {
  der: string;
  pem: string;
  text: string;
  number: number;
  reply: Reply;
}

/** REASON_CODES: the CRLReason codes (RFC 5280 §5.3.1) of the reasons the tests revoke with. */
export const REASON_CODES: Record<string, number> = { keyCompromise: 1, affiliationChanged: 3, superseded: 4, cessationOfOperation: 5, certificateHold: 6, privilegeWithdrawn: 9 };

/** entryOf: the CRL's entry for a serial (its lines up to the next entry), or undefined */
export function entryOf(crl: Crl, serial: string): string | undefined {
  const i = crl.text.indexOf(`Serial Number: ${serial}\n`);
  if (i < 0) return undefined;
  return crl.text.slice(i).split(/\n\s*Serial Number:|\n\s*Signature Algorithm:/)[0];
}

/**
 * PkiClientContext is what the helpers read from the test file, as accessors because the file sets its
 * service and directory in beforeAll, after the helpers are made.
 */
export interface PkiClientContext {
  svc: () => RunningService;
  tmp: () => TmpDir;
  /** issuingPem: the issuing CA certificate, `openssl ocsp -issuer` (ocsp, expectOcsp) */
  issuingPem?: () => string;
  /** operatorToken: the admin API token register(…, 'api') sends */
  operatorToken?: () => string;
  /** textEncoding: how curl decodes a body into Reply.text; default latin1 */
  textEncoding?: BufferEncoding;
}

/**
 * pkiClient makes the helpers for one test file: they share its service, its temporary directory and one
 * counter (next) that names the files they write, so that file names never collide within the file.
 */
export function pkiClient(ctx: PkiClientContext) {
  let seq = 0;
  const next = (): number => ++seq;
  const svc = (): RunningService => ctx.svc();
  const tmp = (): TmpDir => ctx.tmp();
  const need = <T>(what: string, get: (() => T) | undefined): T => {
    if (!get) throw new Error(`pkiClient: ${what} was not given`);
    return get();
  };

  /** curlRaw: one request (the service's chain trusted for HTTPS); everything curl -D wrote, body bytes */
  async function curlRaw(url: string, args: string[] = []): Promise<{ head: string; body: Buffer }> {
    const n = next();
    const hdr = tmp().file(`http/${n}.head`);
    const out = tmp().file(`http/${n}.body`);
    const r = await runProcess('curl', ['-sS', '--cacert', svc().chainPem, '-D', hdr, '-o', out, ...args, url]);
    if (r.code !== 0) throw new Error(`curl ${args.join(' ')} ${url} failed (${r.code}): ${r.stderr}`);
    const head = fs.readFileSync(hdr, 'latin1');
    const body = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
    return { head, body };
  }

  /** curl: one request (the service's chain trusted for HTTPS); status, last response head, body bytes */
  async function curl(url: string, args: string[] = []): Promise<Reply> {
    const { head, body } = await curlRaw(url, args);
    const heads = head.split(/\r?\n\r?\n/).filter((b) => /^HTTP\/\S+ \d{3}/.test(b));
    const lines = heads[heads.length - 1].split(/\r?\n/);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    return { status: Number(/^HTTP\/\S+ (\d{3})/.exec(lines[0])![1]), headers, body, text: body.toString(ctx.textEncoding ?? 'latin1') };
  }

  const cli = async (...args: string[]): Promise<ProcessResult> => svc().cli(args);
  async function cliOk(...args: string[]): Promise<string> {
    const r = await svc().cli(args);
    if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** csrB64: openssl req with the device's key, DER, base64 as the README recipe sends it */
  async function csrB64(key: string, subj: string): Promise<string> {
    const der = tmp().file(`csr/${next()}.der`);
    await openssl('req', '-new', '-key', key, '-subj', subj, '-outform', 'DER', '-out', der);
    return (await must('base64', [der])).stdout;
  }

  async function postEst(op: 'simpleenroll' | 'simplereenroll', body: string, auth: { user?: [string, string]; cert?: [string, string] }): Promise<Reply> {
    const f = tmp().write(`req/${next()}.b64`, body);
    const args = ['-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f}`];
    if (auth.user) args.push('-u', `${auth.user[0]}:${auth.user[1]}`);
    if (auth.cert) args.push('--cert', auth.cert[0], '--key', auth.cert[1]);
    return curl(`${svc().est}/${op}`, args);
  }

  /** certOf: base64 -d | openssl pkcs7 -print_certs of an EST reply, written to a file */
  async function certOf(r: Reply, id: string): Promise<string> {
    if (r.status !== 200) throw new Error(`EST for ${id}: HTTP ${r.status}: ${r.text}`);
    const der = await must('base64', ['-d'], r.body);
    const p7 = tmp().write(`p7/${next()}.der`, der.stdoutBytes);
    const crt = tmp().file(`certs/${id}-${next()}.crt`);
    await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-out', crt);
    return crt;
  }

  /** describeCert: serial, OCSP URL and CRL DP URL as openssl reads them from the certificate */
  async function describeCert(id: string, key: string, crt: string): Promise<Device> {
    const serial = (await openssl('x509', '-in', crt, '-noout', '-serial')).stdout.trim().replace(/^serial=/, '');
    const ocspUrl = (await openssl('x509', '-in', crt, '-noout', '-ocsp_uri')).stdout.trim();
    const text = (await openssl('x509', '-in', crt, '-noout', '-text')).stdout;
    const crlUrl = /X509v3 CRL Distribution Points:\s*\n\s*Full Name:\s*\n\s*URI:(\S+)/.exec(text)![1];
    return { id, key, crt, serial, ocspUrl, crlUrl };
  }

  /**
   * register: `device-ca devices add` (the README recipe) or, to keep the file fast, the same registration
   * through the admin API; either way the one-time secret.
   */
  async function register(id: string, owner: string, via: 'cli' | 'api'): Promise<string> {
    if (via === 'cli') return (await cliOk('devices', 'add', id, '--owner', owner)).trim();
    const r = await curl(`https://localhost:${svc().httpsPort}/api/v1/devices`, [
      '-H',
      `Authorization: Bearer ${need('operatorToken', ctx.operatorToken)}`,
      '-H',
      'Content-Type: application/json',
      '--data-binary',
      JSON.stringify({ id, owner }),
    ]);
    if (r.status !== 201) throw new Error(`register ${id}: HTTP ${r.status} ${r.text}`);
    return (JSON.parse(r.text) as { secret: string }).secret;
  }

  /** enroll: register + the README's EST recipe; returns the device with its first certificate */
  async function enroll(id: string, owner = 'acme', via: 'cli' | 'api' = 'api'): Promise<Device & { secret: string }> {
    const secret = await register(id, owner, via);
    const key = tmp().file(`keys/${id}.key`);
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    const crt = await certOf(await postEst('simpleenroll', await csrB64(key, `/CN=${id}`), { user: [id, secret] }), id);
    return { ...(await describeCert(id, key, crt)), secret };
  }

  /** reenroll: simplereenroll with the device's current certificate as TLS client certificate */
  async function reenroll(d: Device, subj: string): Promise<Reply> {
    return postEst('simplereenroll', await csrB64(d.key, subj), { cert: [d.crt, d.key] });
  }

  /** ocsp: `openssl ocsp -issuer issuing.pem -cert dev.crt -url <AIA OCSP URL> -CAfile chain.pem` */
  async function ocsp(d: Device, ...extra: string[]): Promise<{ code: number | null; out: string }> {
    return opensslAny('ocsp', '-issuer', need('issuingPem', ctx.issuingPem), '-cert', d.crt, '-url', d.ocspUrl, '-CAfile', svc().chainPem, ...extra);
  }

  /**
   * expectOcsp: what openssl prints for one certificate: Response verify OK, "<file>: <status>", and with
   * -resp_text the reason as "Revocation Reason: <name> (0x<code>)" (openssl 3.0 has no name for
   * privilegeWithdrawn and prints "(UNKNOWN) (0x9)"; the code is what matters). unspecified: no reason.
   */
  async function expectOcsp(d: Device, status: 'good' | 'revoked', reason?: string, ...extra: string[]): Promise<string> {
    const r = await ocsp(d, '-resp_text', ...extra);
    expect(r.out).toContain('Response verify OK');
    expect(r.out).toContain(`${d.crt}: ${status}\n`);
    expect(r.out).toContain(`Cert Status: ${status}\n`);
    if (reason) {
      const code = REASON_CODES[reason];
      expect(r.out).toMatch(new RegExp(`\\n\\s*Revocation Reason: (${reason}|\\(UNKNOWN\\)) \\(0x${code.toString(16)}\\)\\n`));
    } else expect(r.out).not.toMatch(/Reason:/);
    expect(r.code).toBe(0);
    return r.out;
  }

  /** fetchCrl: GET the certificate's CRL DP URL; openssl verifies the signature and prints it */
  async function fetchCrl(d: Device): Promise<Crl> {
    const reply = await curl(d.crlUrl);
    expect(reply.status).toBe(200);
    expect(header(reply, 'content-type')).toBe('application/pkix-crl');
    const der = tmp().write(`crl/${next()}.crl`, reply.body);
    const v = await opensslAny('crl', '-inform', 'DER', '-in', der, '-CAfile', svc().chainPem, '-noout');
    expect(v.out.trim()).toBe('verify OK');
    const pem = tmp().file(`crl/${next()}.pem`);
    await openssl('crl', '-inform', 'DER', '-in', der, '-out', pem);
    const text = (await openssl('crl', '-in', pem, '-noout', '-text')).stdout;
    const number = Number(/X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text)![1]);
    return { der, pem, text, number, reply };
  }

  /** crlUntil: fetch the certificate's CRL until it satisfies cond (a revocation shows within a few seconds) */
  async function crlUntil(d: Device, cond: (c: Crl) => boolean, ms = 6000): Promise<Crl> {
    const end = Date.now() + ms;
    for (;;) {
      const c = await fetchCrl(d);
      if (cond(c)) return c;
      if (Date.now() > end) throw new Error(`CRL at ${d.crlUrl} did not change as expected within ${ms} ms:\n${c.text}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** teardown (afterAll): stop the service, which must exit 0, and remove the directory; either may be unset */
  async function teardown(): Promise<void> {
    const code = await (ctx.svc() as RunningService | undefined)?.stop();
    (ctx.tmp() as TmpDir | undefined)?.cleanup();
    expect(code).toBe(0);
  }

  return { next, curlRaw, curl, cli, cliOk, csrB64, postEst, certOf, describeCert, register, enroll, reenroll, ocsp, expectOcsp, fetchCrl, crlUntil, teardown };
}
