import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Crl, Device, Reply, entryOf, header, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Revocation as a relying party sees it, against the real service: devices enroll over EST with curl and
 * openssl (the README recipe); `openssl ocsp` asks the responder named in each certificate (POST with and
 * without a nonce, RFC 5019 GET); `openssl crl` and `openssl verify -crl_check` read the CRL fetched from
 * the certificate's own CRL distribution point. Revocations are made the way an operator makes them:
 * `device-ca revoke`, `devices suspend|resume|transfer|retire`. One service serves the whole file.
 */

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let operatorToken: string;

// ------------------------------------------------------------------------------------------- helpers

const { next, curl, cli, cliOk, enroll, reenroll, expectOcsp, fetchCrl, crlUntil, teardown } = pkiClient({
  svc: () => svc,
  tmp: () => tmp,
  issuingPem: () => issuingPem,
  operatorToken: () => operatorToken,
});

/** verifyWithCrl: `openssl verify -crl_check -CRLfile crl.pem -CAfile chain.pem dev.crt` */
const verifyWithCrl = (d: Device, crl: Crl) => opensslAny('verify', '-crl_check', '-CRLfile', crl.pem, '-CAfile', svc.chainPem, d.crt);

const revoke = (d: Device, reason: string) => cliOk('revoke', d.serial, '--reason', reason);

// ------------------------------------------------------------------------------------------ set-up

const REASONS: [string, string][] = [
  ['keyCompromise', 'Key Compromise'],
  ['superseded', 'Superseded'],
  ['affiliationChanged', 'Affiliation Changed'],
  ['cessationOfOperation', 'Cessation Of Operation'],
  ['privilegeWithdrawn', 'Privilege Withdrawn'],
  ['unspecified', ''],
];
const devices = new Map<string, Device & { secret: string }>();
const dev = (id: string) => devices.get(id)!;

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-revocation-');
  svc = await startService();
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  const ids = ['dev-hold', 'dev-twice', 'dev-timer', ...REASONS.map(([r]) => `dev-${r}`)];
  const all = await Promise.all([enroll('dev-good', 'acme', 'cli'), ...ids.map((id) => enroll(id))]);
  for (const d of all) devices.set(d.id, d);
}, 60_000);

afterAll(teardown);

// -------------------------------------------------------------------------------------------- tests

describe('a valid certificate', () => {
  it('points at this service for OCSP and CRL', () => {
    const d = dev('dev-good');
    expect(d.ocspUrl).toBe(`http://localhost:${svc.httpPort}/ocsp`);
    expect(d.crlUrl).toMatch(new RegExp(`^http://localhost:${svc.httpPort}/crl/device-ca-issuing/\\d+\\.crl$`));
  });

  it('OCSP POST with a nonce: good, Response verify OK, the nonce echoed', async () => {
    const out = await expectOcsp(dev('dev-good'), 'good');
    expect(out).not.toContain('WARNING: no nonce in response');
    expect(out).toMatch(/Response Extensions:\s*\n\s*OCSP Nonce:\s*\n\s*0410[0-9A-F]{32}\n/);
    expect(out).toMatch(/Cert Status: good/);
  });

  it('OCSP POST without a nonce (-no_nonce): good, Response verify OK', async () => {
    await expectOcsp(dev('dev-good'), 'good', undefined, '-no_nonce');
  });

  it('OCSP GET (RFC 5019): good, with Cache-Control max-age, Last-Modified, Expires and a stable ETag', async () => {
    const d = dev('dev-good');
    const req = tmp.file('get/good-req.der');
    await openssl('ocsp', '-issuer', issuingPem, '-cert', d.crt, '-no_nonce', '-reqout', req);
    const b64 = fs.readFileSync(req).toString('base64');
    const url = `${d.ocspUrl}/${encodeURIComponent(b64)}`;
    const r = await curl(url);
    expect(r.status).toBe(200);
    expect(header(r, 'content-type')).toBe('application/ocsp-response');
    const maxAge = Number(/(?:^|,\s*)max-age=(\d+)/.exec(header(r, 'cache-control') ?? '')?.[1]);
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThanOrEqual(60);
    const lastModified = Date.parse(header(r, 'last-modified')!);
    const expires = Date.parse(header(r, 'expires')!);
    expect(lastModified).toBeLessThanOrEqual(Date.now() + 1000);
    expect(expires).toBeGreaterThan(Date.now() + maxAge * 1000 - 2000); // never cached past nextUpdate
    expect(header(r, 'etag')).toMatch(/^"[^"]+"$/);

    const resp = tmp.write('get/good-resp.der', r.body);
    const v = await opensslAny('ocsp', '-respin', resp, '-issuer', issuingPem, '-cert', d.crt, '-CAfile', svc.chainPem, '-no_nonce', '-resp_text');
    expect(v.out).toContain('Response verify OK');
    expect(v.out).toContain(`${d.crt}: good`);
    // thisUpdate / nextUpdate of the response are the Last-Modified / Expires headers
    const thisUpdate = Date.parse(/This Update: (.+ GMT)/.exec(v.out)![1]);
    const nextUpdate = Date.parse(/Next Update: (.+ GMT)/.exec(v.out)![1]);
    expect([lastModified, expires]).toEqual([thisUpdate, nextUpdate]);

    // the same request again: the same pre-signed bytes and ETag; also when the base64 is not %-encoded
    const again = await curl(url);
    expect(again.body.equals(r.body)).toBe(true);
    expect(header(again, 'etag')).toBe(header(r, 'etag'));
    const raw = await curl(`${d.ocspUrl}/${b64}`);
    expect(raw.body.equals(r.body)).toBe(true);
  });

  it('CRL from the certificate CRL DP: DER application/pkix-crl, verify OK, critical IDP equal to the CRL DP, and openssl verify -crl_check OK', async () => {
    const d = dev('dev-good');
    const crl = await fetchCrl(d);
    expect(crl.text).toMatch(new RegExp(`X509v3 Issuing Distribution Point: critical\\s*\\n\\s*Full Name:\\s*\\n\\s*URI:${d.crlUrl.replace(/[.]/g, '\\.')}\\s`));
    expect(entryOf(crl, d.serial)).toBeUndefined();
    const v = await verifyWithCrl(d, crl);
    expect(v.out).toBe(`${d.crt}: OK\n`);
    expect(v.code).toBe(0);
  });

  it('the same CRL as PEM (.crl.pem), and ETag + If-None-Match gives 304 without a body', async () => {
    const d = dev('dev-good');
    const der = await fetchCrl(d);
    const pemReply = await curl(`${d.crlUrl}.pem`);
    expect(pemReply.status).toBe(200);
    expect(pemReply.text).toMatch(/^-----BEGIN X509 CRL-----\n[\s\S]+\n-----END X509 CRL-----\n$/);
    const pemFile = tmp.write('crl/from-pem-url.pem', pemReply.body);
    const asDer = tmp.file('crl/from-pem-url.der');
    await openssl('crl', '-in', pemFile, '-outform', 'DER', '-out', asDer);
    expect(fs.readFileSync(asDer).equals(der.reply.body)).toBe(true);

    const etag = header(der.reply, 'etag')!;
    expect(etag).toMatch(/^"[^"]+"$/);
    expect(header(der.reply, 'cache-control')).toMatch(/max-age=\d+/);
    expect(Date.parse(header(der.reply, 'expires')!)).toBeGreaterThan(Date.now());
    const cached = await curl(d.crlUrl, ['-H', `If-None-Match: ${etag}`]);
    expect(cached.status).toBe(304);
    expect(cached.body.length).toBe(0);
    const other = await curl(d.crlUrl, ['-H', 'If-None-Match: "something-else"']);
    expect(other.status).toBe(200);
  });
});

describe('device-ca revoke <serial> --reason <r>', () => {
  const before = new Map<string, Crl>();

  beforeAll(async () => {
    for (const [r] of REASONS) before.set(r, await fetchCrl(dev(`dev-${r}`)));
    await Promise.all(REASONS.map(([r]) => revoke(dev(`dev-${r}`), r)));
  });

  it.each(REASONS)('%s: OCSP (POST with nonce, and -no_nonce) says revoked with that reason', async (reason) => {
    const d = dev(`dev-${reason}`);
    const shown = reason === 'unspecified' ? undefined : reason; // RFC 5280 §5.3.1: unspecified is not written
    const out = await expectOcsp(d, 'revoked', shown);
    expect(out).not.toContain('WARNING: no nonce in response');
    expect(out).toMatch(/Revocation Time: /);
    await expectOcsp(d, 'revoked', shown, '-no_nonce');
  });

  it.each(REASONS)('%s: the shard CRL lists it with its reason code within seconds, a higher CRL Number, and openssl verify -crl_check says error 23', async (reason, text) => {
    const d = dev(`dev-${reason}`);
    const crl = await crlUntil(d, (c) => entryOf(c, d.serial) !== undefined);
    const entry = entryOf(crl, d.serial)!;
    if (text) expect(entry).toMatch(new RegExp(`X509v3 CRL Reason Code:\\s*\\n\\s*${text}\\s*$`));
    else expect(entry).not.toContain('CRL Reason Code');
    expect(crl.number).toBeGreaterThan(before.get(reason)!.number);
    expect(crl.text).toMatch(new RegExp(`Issuing Distribution Point: critical\\s*\\n\\s*Full Name:\\s*\\n\\s*URI:${d.crlUrl.replace(/[.]/g, '\\.')}\\s`));
    const v = await verifyWithCrl(d, crl);
    expect(v.out).toMatch(/error 23 at 0 depth lookup: certificate revoked/);
    expect(v.code).not.toBe(0);
  });

  it('the old ETag no longer matches once the CRL changed', async () => {
    const d = dev('dev-keyCompromise');
    const old = before.get('keyCompromise')!;
    const r = await curl(d.crlUrl, ['-H', `If-None-Match: ${header(old.reply, 'etag')}`]);
    expect(r.status).toBe(200);
    expect(header(r, 'etag')).not.toBe(header(old.reply, 'etag'));
  });

  it('OCSP GET answers revoked at once, with a new ETag', async () => {
    const d = dev('dev-superseded');
    const req = tmp.file('get/superseded.der');
    await openssl('ocsp', '-issuer', issuingPem, '-cert', d.crt, '-no_nonce', '-reqout', req);
    const r = await curl(`${d.ocspUrl}/${encodeURIComponent(fs.readFileSync(req).toString('base64'))}`);
    const resp = tmp.write('get/superseded-resp.der', r.body);
    const v = await opensslAny('ocsp', '-respin', resp, '-issuer', issuingPem, '-cert', d.crt, '-CAfile', svc.chainPem, '-no_nonce');
    expect(v.out).toContain('Response verify OK');
    expect(v.out).toMatch(new RegExp(`${d.crt}: revoked[\\s\\S]*Reason: superseded\\n`));
  });

  it('revoking again says already revoked and exits 0; the first reason stays', async () => {
    const d = dev('dev-twice');
    const first = await cli('revoke', d.serial, '--reason', 'superseded');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${d.serial.toLowerCase()} revoked (superseded)\n`);
    const second = await cli('revoke', d.serial, '--reason', 'keyCompromise');
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/already/);
    await expectOcsp(d, 'revoked', 'superseded');
  });

  it('the background publisher (crl.checkInterval 2 s) re-issues the shard CRL without anyone fetching it', async () => {
    const d = dev('dev-timer');
    const before = await fetchCrl(d);
    await revoke(d, 'keyCompromise');
    // nobody fetches until the store holds a CRL that lists the serial: only the timer can have made it. Watched
    // in the store itself (bounded), so a loaded machine that runs the timer late makes the wait longer, not the
    // test red
    const serial = Buffer.from(d.serial.length % 2 ? `0${d.serial}` : d.serial, 'hex');
    const stored = (): { number: number; this_update: number } | undefined => {
      const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
      try {
        const rows = db.prepare('SELECT number, this_update, der FROM crls').all() as { number: number; this_update: number; der: Buffer }[];
        return rows.find((r) => r.der.includes(serial));
      } finally {
        db.close();
      }
    };
    let made = stored();
    for (const end = Date.now() + 20_000; !made && Date.now() < end; made = stored()) await new Promise((r) => setTimeout(r, 100));
    expect(made).toBeDefined();
    const crl = await fetchCrl(d);
    expect(entryOf(crl, d.serial)).toMatch(/Key Compromise/);
    expect(crl.number).toBeGreaterThan(before.number);
    // the CRL served is the one the timer stored (its number and thisUpdate, Last-Modified), not one made on fetch
    expect(crl.number).toBe(made!.number);
    expect(Date.parse(header(crl.reply, 'last-modified')!)).toBe(Math.floor(made!.this_update / 1000) * 1000);
  });

  it('an unknown serial: exit code 4 and a message naming it', async () => {
    const r = await cli('revoke', '0badc0ffee', '--reason', 'keyCompromise');
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/no certificate with serial 0badc0ffee/);
  });

  it('an unknown reason: exit code 1 and the list of reasons', async () => {
    const r = await cli('revoke', dev('dev-good').serial, '--reason', 'stolen');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/keyCompromise/);
    await expectOcsp(dev('dev-good'), 'good');
  });

  it('a revoked certificate cannot re-enroll (simplereenroll with it as TLS client certificate: 403)', async () => {
    const d = dev('dev-keyCompromise');
    const r = await reenroll(d, '/O=acme/CN=dev-keyCompromise');
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/revoked/);
  });
});

describe('suspend (certificateHold) and resume', () => {
  it('suspend: OCSP revoked with certificateHold, the CRL lists Certificate Hold, verify -crl_check error 23', async () => {
    const d = dev('dev-hold');
    const before = await fetchCrl(d);
    expect((await verifyWithCrl(d, before)).code).toBe(0);
    expect(await cliOk('devices', 'suspend', 'dev-hold')).toMatch(/^dev-hold suspended; certificates: [0-9a-f]+ revoked \(certificateHold\)\n$/);
    await expectOcsp(d, 'revoked', 'certificateHold');
    const crl = await crlUntil(d, (c) => entryOf(c, d.serial) !== undefined);
    expect(entryOf(crl, d.serial)).toMatch(/X509v3 CRL Reason Code:\s*\n\s*Certificate Hold/);
    expect(crl.number).toBeGreaterThan(before.number);
    expect((await verifyWithCrl(d, crl)).out).toMatch(/error 23 at 0 depth lookup: certificate revoked/);
    const r = await reenroll(d, '/O=acme/CN=dev-hold');
    expect(r.status).toBe(403);
  });

  it('resume: OCSP good again, the CRL no longer lists it, verify -crl_check OK, and it renews', async () => {
    const d = dev('dev-hold');
    expect(await cliOk('devices', 'resume', 'dev-hold')).toMatch(/^dev-hold active; certificates: [0-9a-f]+ valid\n$/);
    await expectOcsp(d, 'good');
    await expectOcsp(d, 'good', undefined, '-no_nonce');
    const crl = await crlUntil(d, (c) => entryOf(c, d.serial) === undefined);
    const v = await verifyWithCrl(d, crl);
    expect(v.out).toBe(`${d.crt}: OK\n`);
    const renewed = await reenroll(d, '/O=acme/CN=dev-hold');
    expect(renewed.status).toBe(200);
  });
});

describe('URLs that name nothing', () => {
  it.each([
    '/crl/device-ca-issuing/16.crl',
    '/crl/device-ca-issuing/99999.crl',
    '/crl/device-ca-issuing/-1.crl',
    '/crl/device-ca-issuing/abc.crl',
    '/crl/no-such-ca/0.crl',
    '/crl/device-ca-issuing/0.crl.der',
  ])('%s: 404', async (p) => {
    const r = await curl(`http://127.0.0.1:${svc.httpPort}${p}`);
    expect(r.status).toBe(404);
    expect(header(r, 'content-type')).toMatch(/^text\/plain/);
  });

  it('PUT /ocsp: 405 with Allow: GET, POST', async () => {
    const r = await curl(`http://127.0.0.1:${svc.httpPort}/ocsp`, ['-X', 'PUT', '--data-binary', 'x']);
    expect(r.status).toBe(405);
    expect(header(r, 'allow')).toBe('GET, POST');
  });
});

describe('OCSP requests the responder refuses or cannot answer', () => {
  const MALFORMED = '30030a0101';

  async function postOcsp(body: Buffer): Promise<Reply> {
    const f = tmp.write(`ocsp/${next()}.bin`, body);
    return curl(`http://127.0.0.1:${svc.httpPort}/ocsp`, ['-H', 'Content-Type: application/ocsp-request', '--data-binary', `@${f}`]);
  }

  /** expectMalformed: HTTP 200, the five-byte OCSPResponse, and openssl's reading of it */
  async function expectMalformed(r: Reply): Promise<void> {
    expect(r.status).toBe(200);
    expect(header(r, 'content-type')).toBe('application/ocsp-response');
    expect(r.body.toString('hex')).toBe(MALFORMED);
    const f = tmp.write(`ocsp/${next()}.der`, r.body);
    const v = await opensslAny('ocsp', '-respin', f, '-noverify');
    expect(v.out).toContain('Responder Error: malformedrequest (1)');
  }

  it('garbage POST body: malformedRequest', async () => {
    await expectMalformed(await postOcsp(Buffer.from('this is not an OCSP request\n')));
  });

  it('a POST body over 8192 bytes: malformedRequest', async () => {
    const req = tmp.file('ocsp/big-req.der');
    await openssl('ocsp', '-issuer', issuingPem, '-cert', dev('dev-good').crt, '-reqout', req);
    await expectMalformed(await postOcsp(Buffer.concat([fs.readFileSync(req), Buffer.alloc(8200, 0x41)])));
    await expectMalformed(await postOcsp(Buffer.alloc(20_000, 0x30)));
  });

  it.each([
    ['not base64', '%25%25%25!!'],
    ['base64 of garbage', encodeURIComponent(Buffer.from('garbage in').toString('base64'))],
    ['empty', ''],
  ])('GET with %s: malformedRequest', async (_w, tail) => {
    await expectMalformed(await curl(`http://127.0.0.1:${svc.httpPort}/ocsp/${tail}`));
  });

  it('a certificate of another CA (made with openssl): unauthorized (6)', async () => {
    const caKey = tmp.file('other/ca.key');
    const caPem = tmp.file('other/ca.pem');
    const leafKey = tmp.file('other/leaf.key');
    const leafCsr = tmp.file('other/leaf.csr');
    const leafPem = tmp.file('other/leaf.pem');
    await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-subj', '/O=Other/CN=Other CA', '-days', '2', '-out', caPem);
    await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', leafKey, '-subj', '/CN=dev-good', '-out', leafCsr);
    await openssl('x509', '-req', '-in', leafCsr, '-CA', caPem, '-CAkey', caKey, '-set_serial', '0x' + dev('dev-good').serial, '-days', '1', '-out', leafPem);
    for (const extra of [[], ['-no_nonce']]) {
      const r = await opensslAny('ocsp', '-issuer', caPem, '-cert', leafPem, '-url', dev('dev-good').ocspUrl, ...extra);
      expect(r.out).toContain('Responder Error: unauthorized (6)');
    }
  });

  it('an unknown serial of our issuer: unknown, signed', async () => {
    const r = await opensslAny('ocsp', '-issuer', issuingPem, '-serial', '0x1234567', '-url', dev('dev-good').ocspUrl, '-CAfile', svc.chainPem);
    expect(r.out).toContain('Response verify OK');
    expect(r.out).toMatch(/0x1234567: unknown\n/);
  });
});
