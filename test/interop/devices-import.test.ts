import * as fs from 'node:fs';
import { openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * `device-ca devices import` (the bulk registration path), run as an operator runs it beside the
 * service: every line checked before anything is written, batches committed with their secrets on disk
 * first, the secrets file readable by the operator only, and an imported device enrolls over EST
 * (curl + openssl) with the secret from that file.
 */

let svc: RunningService;
let tmp: TmpDir;
const { curlRaw, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp });

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-import-');
  svc = await startService({ env: { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' } });
}, 60_000);

afterAll(async () => {
  await svc?.stop();
  teardown();
  tmp?.cleanup();
});

const deviceCount = async (): Promise<number> => {
  const r = await svc.cli(['--json', 'devices', 'list', '--all']);
  if (r.code !== 0) throw new Error(r.stderr);
  return (JSON.parse(r.stdout) as unknown[]).length;
};
const lines = (file: string): string[] => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);

describe('devices import', () => {
  it('registers 2,500 devices from JSON lines in batches; the secrets file is 0600 and an imported device enrolls with its secret', async () => {
    const input = tmp.write('fleet.jsonl', Array.from({ length: 2500 }, (_, i) => JSON.stringify(i % 2 ? { id: `imp-${i}`, owner: 'acme' } : { id: `imp-${i}` })).join('\n') + '\n');
    const out = tmp.file('fleet-secrets.jsonl');
    const r = await svc.cli(['devices', 'import', input, '--secrets-out', out, '--owner', 'globex', '--batch', '1000']);
    expect(r.stderr).toMatch(/^imported 2500 device\(s\) in [\d.]+ s; secrets in /m);
    expect(r.code).toBe(0);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    const secrets = lines(out).map((l) => JSON.parse(l) as { id: string; secret: string; secretExpiresAt: string });
    expect(secrets.map((s) => s.id)).toEqual(Array.from({ length: 2500 }, (_, i) => `imp-${i}`));
    expect(new Set(secrets.map((s) => s.secret)).size).toBe(2500);
    // the line's owner wins over --owner; --owner fills the rest
    const show = async (id: string) => JSON.parse((await svc.cli(['--json', 'devices', 'show', id])).stdout) as { owner: string; state: string };
    expect(await show('imp-1')).toMatchObject({ owner: 'acme', state: 'registered' });
    expect(await show('imp-2')).toMatchObject({ owner: 'globex' });

    // the README's EST recipe with the imported secret
    const dev = secrets[1234];
    const key = tmp.file('imp.key');
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    const der = tmp.file('imp.csr.der');
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${dev.id}`, '-outform', 'DER', '-out', der);
    const body = tmp.write('imp.csr.b64', fs.readFileSync(der).toString('base64'));
    const reply = await curlRaw(`${svc.est}/simpleenroll`, ['-u', `${dev.id}:${dev.secret}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${body}`]);
    expect(reply.head).toMatch(/^HTTP\/1\.1 200/m);
    const p7 = tmp.write('imp.p7', Buffer.from(reply.body.toString('latin1'), 'base64'));
    const crt = tmp.file('imp.crt');
    await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-out', crt);
    expect((await openssl('verify', '-CAfile', svc.chainPem, crt)).stdout.trim()).toBe(`${crt}: OK`);
    expect((await openssl('x509', '-in', crt, '-noout', '-subject')).stdout).toContain(`CN = ${dev.id}`);
  }, 120_000);

  it('CSV: columns in any order, quoted fields; the secrets come back as CSV', async () => {
    const input = tmp.write('fleet.csv', 'label,id,owner\r\ndefault,csv-1,"Acme, Inc."\r\n,csv-2,"say ""hi"""\r\n');
    const out = tmp.file('fleet-secrets.csv');
    const r = await svc.cli(['devices', 'import', input, '--secrets-out', out]);
    expect(r.code).toBe(0);
    const got = lines(out);
    expect(got[0]).toBe('id,secret,secretExpiresAt');
    expect(got.slice(1).map((l) => l.split(',')[0])).toEqual(['csv-1', 'csv-2']);
    const d1 = JSON.parse((await svc.cli(['--json', 'devices', 'show', 'csv-1'])).stdout) as { owner: string; label: string };
    expect(d1).toMatchObject({ owner: 'Acme, Inc.', label: 'default' });
    expect(JSON.parse((await svc.cli(['--json', 'devices', 'show', 'csv-2'])).stdout)).toMatchObject({ owner: 'say "hi"', label: null });
  }, 60_000);

  it('a file with bad lines imports nothing and names each line; no secrets file is made', async () => {
    const before = await deviceCount();
    const input = tmp.write(
      'bad.jsonl',
      [
        JSON.stringify({ id: 'bad-ok-1' }),
        JSON.stringify({ id: 'bad ok' }),
        '{"id":"bad-2","__proto__":{"polluted":true}}',
        JSON.stringify({ id: 'bad-ok-1' }),
        JSON.stringify({ id: 'bad-3', label: 'nosuchlabel' }),
        '{"id": 12}',
        'not json',
        JSON.stringify({ id: 'bad-4', owner: 'x'.repeat(200) }),
      ].join('\n'),
    );
    const out = tmp.file('bad-secrets.jsonl');
    const r = await svc.cli(['devices', 'import', input, '--secrets-out', out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('7 bad line(s), nothing imported');
    for (const n of [2, 3, 4, 5, 6, 7, 8]) expect(r.stderr).toContain(`line ${n}:`);
    expect(r.stderr).toContain('also on line 1');
    expect(r.stderr).not.toMatch(/at \S+ \(/); // no stack trace
    expect(fs.existsSync(out)).toBe(false);
    expect(await deviceCount()).toBe(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  }, 60_000);

  it('an id already registered stops the import at its batch (earlier batches stay, their secrets only); --skip-existing goes on', async () => {
    expect((await svc.cli(['devices', 'add', 'dup-5', '--owner', 'acme'])).code).toBe(0);
    const input = tmp.write('dup.jsonl', Array.from({ length: 8 }, (_, i) => JSON.stringify({ id: `dup-${i}` })).join('\n'));
    const out = tmp.file('dup-secrets.jsonl');
    const r = await svc.cli(['devices', 'import', input, '--secrets-out', out, '--batch', '4']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('dup-5');
    expect(r.stderr).toContain('4 device(s) imported before it');
    // the failed batch's secrets were taken back out of the file: it lists exactly the devices that exist
    expect(lines(out).map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['dup-0', 'dup-1', 'dup-2', 'dup-3']);
    expect((await svc.cli(['devices', 'show', 'dup-4'])).code).not.toBe(0);

    const out2 = tmp.file('dup-secrets-2.jsonl');
    const again = await svc.cli(['devices', 'import', input, '--secrets-out', out2, '--batch', '4', '--skip-existing']);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('imported 3 device(s), 5 already registered passed over');
    expect(lines(out2).map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['dup-4', 'dup-6', 'dup-7']);
  }, 60_000);

  it('refuses to write over an existing secrets file', async () => {
    const input = tmp.write('one.jsonl', JSON.stringify({ id: 'one-1' }));
    const out = tmp.write('taken.jsonl', 'precious\n');
    const r = await svc.cli(['devices', 'import', input, '--secrets-out', out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('exists: name a new file');
    expect(fs.readFileSync(out, 'utf8')).toBe('precious\n');
    expect((await svc.cli(['devices', 'show', 'one-1'])).code).not.toBe(0);
  }, 60_000);
});
