import * as path from 'node:path';
import { Device, entryOf, openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The device life cycle as an operator drives it (`device-ca devices suspend|resume|transfer|retire`) and
 * as a device lives it (EST with curl and openssl, the README recipe): what each step does to the device's
 * certificates (OCSP and CRL, read with openssl from the URLs in the certificate) and to its credentials
 * (which secret or certificate may still enroll), and the refusals with their exit codes and messages.
 * One service serves the whole file; test/interop/revocation.test.ts covers OCSP and CRL in depth.
 */

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let operatorToken: string;

// ------------------------------------------------------------------------------------------- helpers

const { cli, cliOk, csrB64, postEst, certOf, describeCert, enroll, reenroll, expectOcsp, crlUntil, teardown } = pkiClient({
  svc: () => svc,
  tmp: () => tmp,
  issuingPem: () => issuingPem,
  operatorToken: () => operatorToken,
});

// ------------------------------------------------------------------------------------------ set-up

const devices = new Map<string, Device & { secret: string }>();
const dev = (id: string) => devices.get(id)!;

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-lifecycle-');
  svc = await startService();
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  const all = await Promise.all([enroll('dev-xfer', 'acme', 'cli'), enroll('dev-susp'), enroll('dev-active'), enroll('dev-rel', 'acme', 'cli')]);
  for (const d of all) devices.set(d.id, d);
}, 60_000);

afterAll(teardown);

// -------------------------------------------------------------------------------------------- tests

describe('suspend and resume', () => {
  it('a suspended device cannot renew (403) and cannot be suspended again (exit 1, "is suspended")', async () => {
    const d = dev('dev-susp');
    expect(await cliOk('devices', 'suspend', 'dev-susp')).toMatch(/^dev-susp suspended; certificates: [0-9a-f]+ revoked \(certificateHold\)\n$/);
    await expectOcsp(d, 'revoked', 'certificateHold');
    const r = await reenroll(d, '/O=acme/CN=dev-susp');
    expect(r.status).toBe(403);
    const again = await cli('devices', 'suspend', 'dev-susp');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe('device-ca: device dev-susp is suspended\n');
  });

  it('resume releases the hold: OCSP good, and the same certificate renews', async () => {
    const d = dev('dev-susp');
    expect(await cliOk('devices', 'resume', 'dev-susp')).toMatch(/^dev-susp active; certificates: [0-9a-f]+ valid\n$/);
    await expectOcsp(d, 'good');
    const r = await reenroll(d, '/O=acme/CN=dev-susp');
    expect(r.status).toBe(200);
    const show = JSON.parse(await cliOk('devices', 'show', 'dev-susp', '--json')) as { state: string; certificates: { status: string }[] };
    expect(show.state).toBe('active');
    expect(show.certificates.map((c) => c.status)).toEqual(['valid', 'valid']);
  });

  it('resume of a device that is not suspended is refused with a clear message (exit 1)', async () => {
    const r = await cli('devices', 'resume', 'dev-active');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('device-ca: device dev-active is active\n');
    await expectOcsp(dev('dev-active'), 'good');
  });

  it('an unknown device: exit code 4', async () => {
    const cmds = ['suspend', 'resume', 'retire', 'show'];
    const results = await Promise.all(cmds.map((cmd) => cli('devices', cmd, 'no-such-device')));
    expect(results.map((r, i) => ({ cmd: cmds[i], code: r.code, stderr: r.stderr }))).toEqual(cmds.map((cmd) => ({ cmd, code: 4, stderr: 'device-ca: no device no-such-device\n' })));
  });
});

describe('transfer and retire', () => {
  it('transfer: the old certificate is revoked (affiliationChanged) and cannot renew; the new secret enrolls with O=<new owner>', async () => {
    const d = dev('dev-xfer');
    const t = await cli('devices', 'transfer', 'dev-xfer', '--to', 'globex');
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^[A-Za-z0-9_-]{20,}\n$/);
    const secret = t.stdout.trim();
    await expectOcsp(d, 'revoked', 'affiliationChanged');
    expect((await reenroll(d, '/O=acme/CN=dev-xfer')).status).toBe(403);
    // the first owner's secret is gone
    const oldSecret = await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-xfer'), { user: ['dev-xfer', d.secret] });
    expect(oldSecret.status).toBe(401);

    const crt = await certOf(await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-xfer'), { user: ['dev-xfer', secret] }), 'dev-xfer');
    const subject = (await openssl('x509', '-in', crt, '-noout', '-subject', '-nameopt', 'RFC2253')).stdout.trim();
    expect(subject).toBe('subject=CN=dev-xfer,O=globex');
    const fresh = await describeCert('dev-xfer', d.key, crt);
    await expectOcsp(fresh, 'good');
    const crl = await crlUntil(d, (c) => entryOf(c, d.serial) !== undefined);
    expect(entryOf(crl, d.serial)).toMatch(/Affiliation Changed/);
    devices.set('dev-xfer-new', { ...fresh, secret });
  });

  it('release: revoked at once (affiliationChanged), transferring, nothing enrolls; cancel-release prints a secret for the old owner; claim prints the only secret for the new one', async () => {
    const d = dev('dev-rel');
    expect(await cliOk('devices', 'release', 'dev-rel', '--to', 'globex')).toMatch(/^dev-rel transferring to globex; certificates: [0-9a-f]+ revoked \(affiliationChanged\)\n$/);
    await expectOcsp(d, 'revoked', 'affiliationChanged');
    expect((await reenroll(d, '/O=acme/CN=dev-rel')).status).toBe(403);
    expect((await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-rel'), { user: ['dev-rel', d.secret] })).status).toBe(401);
    const listed = JSON.parse(await cliOk('devices', 'list', '--state', 'transferring', '--json')) as { id: string; owner: string; pendingOwner: string }[];
    expect(listed.find((x) => x.id === 'dev-rel')).toMatchObject({ owner: 'acme', pendingOwner: 'globex' });
    const again = await cli('devices', 'release', 'dev-rel', '--to', 'initech');
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 1, stderr: 'device-ca: device dev-rel is transferring\n' });

    // cancelled: back to acme, with a new secret that enrolls as O=acme
    const back = (await cliOk('devices', 'cancel-release', 'dev-rel')).trim();
    expect(back).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(JSON.parse(await cliOk('devices', 'show', 'dev-rel', '--json'))).toMatchObject({ owner: 'acme', state: 'registered', pendingOwner: null });
    expect((await cli('devices', 'claim', 'dev-rel')).stderr).toBe('device-ca: device dev-rel is registered, not transferring\n');

    // released again and claimed: the claim's secret enrolls as O=globex, the cancel's secret no longer works
    await cliOk('devices', 'release', 'dev-rel', '--to', 'globex');
    const secret = (await cliOk('devices', 'claim', 'dev-rel')).trim();
    expect((await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-rel'), { user: ['dev-rel', back] })).status).toBe(401);
    const crt = await certOf(await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-rel'), { user: ['dev-rel', secret] }), 'dev-rel');
    expect((await openssl('x509', '-in', crt, '-noout', '-subject', '-nameopt', 'RFC2253')).stdout.trim()).toBe('subject=CN=dev-rel,O=globex');
    // about twenty processes (ten of them the CLI, each a Node start): 8 s alone, past the 60 s default on a loaded 2-core machine
  }, 180_000);

  it('retire: every certificate revoked (cessationOfOperation); the id can never enroll again (403 with any secret); retiring twice fails with a clear message', async () => {
    const d = dev('dev-xfer-new');
    expect(await cliOk('devices', 'retire', 'dev-xfer')).toMatch(/^dev-xfer retired; certificates: [0-9a-f]+ revoked \(cessationOfOperation\)\n$/);
    await expectOcsp(d, 'revoked', 'cessationOfOperation');
    for (const s of [d.secret, 'made-up-secret']) {
      const r = await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-xfer'), { user: ['dev-xfer', s] });
      expect({ secret: s, status: r.status, text: r.text.trim() }).toEqual({ secret: s, status: 403, text: 'device is retired' });
    }
    const again = await cli('devices', 'retire', 'dev-xfer');
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/dev-xfer is retired/);
  });

  it('new-secret: the old secret stops working, the new one (alone on stdout) enrolls; a retired device gets none', async () => {
    const old = (await cliOk('devices', 'add', 'dev-lost', '--owner', 'acme')).trim();
    const fresh = (await cliOk('devices', 'new-secret', 'dev-lost')).trim();
    expect(fresh).toMatch(/^\S{20,}$/);
    expect(fresh).not.toBe(old);
    const key = tmp.file('keys/dev-lost.key');
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    const refused = await postEst('simpleenroll', await csrB64(key, '/CN=dev-lost'), { user: ['dev-lost', old] });
    expect(refused.status).toBe(401);
    const ok = await postEst('simpleenroll', await csrB64(key, '/CN=dev-lost'), { user: ['dev-lost', fresh] });
    expect(ok.status).toBe(200);
    await cliOk('devices', 'retire', 'dev-lost');
    const none = await cli('devices', 'new-secret', 'dev-lost');
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/dev-lost is retired/);
    expect(none.stdout).toBe('');
  });

  it('a device retired before it enrolled cannot use its unused secret (403)', async () => {
    const secret = (await cliOk('devices', 'add', 'dev-never', '--owner', 'acme')).trim();
    await cliOk('devices', 'retire', 'dev-never');
    const key = tmp.file('keys/dev-never.key');
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    const r = await postEst('simpleenroll', await csrB64(key, '/CN=dev-never'), { user: ['dev-never', secret] });
    expect(r.status).toBe(403);
  });
});
