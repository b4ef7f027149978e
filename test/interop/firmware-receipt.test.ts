import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Device, openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Firmware receipts (issue 13, RFC 4108 §3/§4) as a device posts them: devices enrolled over EST with
 * openssl-made keys, a plain and an encrypted release, receipts made by `device-ca firmware receipt`
 * (offline) or by openssl alone (asn1parse -genconf + cms -sign), posted with curl over mTLS;
 * `device-ca firmware status` then shows who runs what, and `latest` serves a device that reported its
 * hardware the newest release for that hardware.
 */

let svc: RunningService;
let tmp: TmpDir;
let operatorToken: string;
const { cli, cliOk, curl, enroll, teardown } = pkiClient({
  svc: () => svc,
  tmp: () => tmp,
  issuingPem: () => path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem'),
  operatorToken: () => operatorToken,
});
let devA: Device, devB: Device, devC: Device;
const signers: { key: string; crt: string }[] = [];
let image: string;

/** offline: the CLI with no DEVICE_CA_* environment (a device, or a signer's machine) */
const offline = async (...args: string[]): Promise<string> => {
  const r = await runCli(args, {});
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};
const post = (name: string, version: number, receipt: string, d?: Device) =>
  curl(`https://localhost:${svc.httpsPort}/firmware/${name}/${version}/receipt`, [
    '-H',
    'Content-Type: application/cms',
    '--data-binary',
    `@${receipt}`,
    ...(d ? ['--cert', d.crt, '--key', d.key] : []),
  ]);
const receipt = async (d: Device, version: number, ...extra: string[]): Promise<string> => {
  const out = tmp.file(`receipts/${d.id}-${version}-${crypto.randomUUID()}.der`);
  await offline('firmware', 'receipt', '--name', 'sensor-fw', '--version', String(version), '--cert', d.crt, '--key', d.key, '--out', out, ...extra);
  return out;
};

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-fw-receipt-');
  svc = await startService();
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  [devA, devB, devC] = await Promise.all([enroll('rc-a', 'acme'), enroll('rc-b', 'acme'), enroll('rc-c', 'globex')]);
  for (const role of ['manufacturer', 'developer', 'administrator']) {
    const key = tmp.file(`signers/${role}.key`);
    const csr = tmp.file(`signers/${role}.csr`);
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-1`, '-out', csr);
    signers.push({ key, crt: tmp.write(`signers/${role}.crt`, await cliOk('signers', 'add', `${role}-1`, '--role', role, '--csr', csr)) });
  }
  image = tmp.write('image.bin', crypto.randomBytes(4096));
  await publish('sensor-fw', 1, ['--out', tmp.file('rel/1.der')]);
  await publish('sensor-fw', 2, ['--encrypt-to', 'rc-a', '--out', tmp.file('rel/2.der')]);
}, 120_000);

/** publish: create a package, sign it as each role (offline), release it with `release` arguments */
async function publish(name: string, version: number, release: string[], create: string[] = []): Promise<void> {
  let pkg = tmp.file(`pkg/${name}-${version}-0.der`);
  await offline('firmware', 'create', '--image', image, '--name', name, '--version', String(version), ...create, '--out', pkg);
  for (const [i, s] of signers.entries()) {
    const out = tmp.file(`pkg/${name}-${version}-${i + 1}.der`);
    await offline('firmware', 'sign', '--in', pkg, '--cert', s.crt, '--key', s.key, '--out', out);
    pkg = out;
  }
  await cliOk('firmware', 'release', '--in', pkg, ...release);
}

afterAll(teardown);

describe('POST /firmware/<name>/<version>/receipt', () => {
  it('a receipt made offline verifies with openssl and is recorded once; the same receipt again is a repeat', async () => {
    const r = await receipt(devA, 1);
    const content = tmp.file('receipts/a-1.content');
    await openssl('cms', '-verify', '-noverify', '-inform', 'DER', '-in', r, '-out', content);
    expect((await openssl('asn1parse', '-inform', 'DER', '-in', content)).stdout).toContain('sensor-fw@1');
    const first = await post('sensor-fw', 1, r, devA);
    expect([first.status, JSON.parse(first.text)]).toEqual([
      201,
      { name: 'sensor-fw', device: 'rc-a', receipt: 'loaded', outcome: 'recorded', running: { version: 1, at: expect.any(String) }, error: null },
    ]);
    const again = await post('sensor-fw', 1, r, devA);
    expect([again.status, JSON.parse(again.text).outcome]).toEqual([200, 'repeat']);
    expect((await post('sensor-fw', 2, await receipt(devA, 2), devA)).status).toBe(201);
    // the v1 receipt once more, now that the device reported v2: a replay
    const replay = await post('sensor-fw', 1, r, devA);
    expect([replay.status, replay.text]).toEqual([409, 'device rc-a already reported version 2 of sensor-fw: a receipt for 1 is stale\n']);
  });

  it('a receipt built with openssl alone (asn1parse -genconf, cms -sign, no certificate carried) is accepted', async () => {
    const conf = tmp.write(
      'receipts/b.conf',
      ['asn1=SEQUENCE:receipt', '[receipt]', 'hwType=OID:1.3.6.1.4.1.99999.1', 'hwSerialNum=FORMAT:ASCII,OCT:rc-b', 'fwPkgName=FORMAT:ASCII,OCT:sensor-fw@1', ''].join('\n'),
    );
    const content = tmp.file('receipts/b.content');
    await openssl('asn1parse', '-genconf', conf, '-out', content, '-noout');
    const r = tmp.file('receipts/b.der');
    await openssl(
      'cms',
      '-sign',
      '-binary',
      '-nodetach',
      '-nocerts',
      '-econtent_type',
      '1.2.840.113549.1.9.16.1.17',
      '-signer',
      devB.crt,
      '-inkey',
      devB.key,
      '-in',
      content,
      '-outform',
      'DER',
      '-out',
      r,
    );
    const got = await post('sensor-fw', 1, r, devB);
    expect([got.status, JSON.parse(got.text).running.version]).toEqual([201, 1]);
  });

  it('an error report records the error code; the device shows with a load error', async () => {
    const r = await receipt(devC, 1, '--error', '23');
    const got = await post('sensor-fw', 1, r, devC);
    expect([got.status, JSON.parse(got.text).error]).toEqual([201, { version: 1, code: 23, vendorCode: null, at: expect.any(String) }]);
  });

  it('refused with a reason: no certificate, the plain HTTP listener, another device, a release not its own, garbage', async () => {
    const mine = await receipt(devB, 1);
    const anonymous = await post('sensor-fw', 1, mine);
    expect([anonymous.status, anonymous.text]).toEqual([401, 'a receipt is posted over HTTPS with the device certificate (TLS client authentication)\n']);
    const http = await curl(`http://localhost:${svc.httpPort}/firmware/sensor-fw/1/receipt`, ['--data-binary', `@${mine}`]);
    expect(http.status).toBe(404);
    const relayed = await post('sensor-fw', 1, mine, devC);
    expect(relayed.status).toBe(403);
    expect(relayed.text).toMatch(/^the receipt is signed by .*CN=rc-b, not by the client certificate of device rc-c\n$/);
    const notMine = await post('sensor-fw', 2, await receipt(devB, 2), devB); // encrypted to rc-a only
    expect([notMine.status, notMine.text]).toEqual([404, 'no such firmware release\n']);
    const garbage = await post('sensor-fw', 1, tmp.write('receipts/garbage', Buffer.from('hello')), devB);
    expect(garbage.status).toBe(400);
    expect(garbage.text).toMatch(/^the file is not a DER CMS SignedData/);
  });
});

describe('firmware status', () => {
  it('shows which device runs which version, counts per version, and devices with a load error', async () => {
    const st = JSON.parse(await cliOk('firmware', 'status', 'sensor-fw', '--json')) as {
      versions: { version: number; devices: number }[];
      devices: { device: string; version: number | null; error: { code: number } | null }[];
      errors: { device: string; version: number; code: number }[];
    };
    expect(st.versions).toEqual([
      { version: 2, devices: 1 },
      { version: 1, devices: 1 },
    ]);
    expect(st.devices.map((d) => [d.device, d.version, d.error?.code ?? null])).toEqual([
      ['rc-a', 2, null],
      ['rc-b', 1, null],
      ['rc-c', null, 23],
    ]);
    expect(st.errors.map((e) => [e.device, e.version, e.code])).toEqual([['rc-c', 1, 23]]);
    const text = await cliOk('firmware', 'status', 'sensor-fw');
    expect(text).toContain('version 2: 1 device(s)');
    expect(text).toContain('1 device(s) with a load error: rc-c');
    expect((await cli('firmware', 'status', 'nothing')).stderr).toBe('device-ca: no firmware named "nothing" was released\n');
    expect(text).toContain('sensor-fw: released 2, 1; 3 device(s) reported');
    expect(text).toContain('load error code 23: 1 device(s)');
  });

  it('pages the device rows (--limit, --after); the summary counts every device on every page', async () => {
    type Status = { versions: unknown; summary: unknown; devices: { device: string }[]; errors: { device: string }[]; next: string | null };
    const first = await cli('firmware', 'status', 'sensor-fw', '--limit', '2', '--json');
    const p1 = JSON.parse(first.stdout) as Status;
    expect([p1.devices.map((d) => d.device), p1.errors, p1.next]).toEqual([['rc-a', 'rc-b'], [], 'rc-b']);
    expect(first.stderr).toBe('device-ca: more devices: repeat with --after rc-b\n');
    const p2 = JSON.parse(await cliOk('firmware', 'status', 'sensor-fw', '--limit', '2', '--after', p1.next!, '--json')) as Status;
    expect([p2.devices.map((d) => d.device), p2.errors.map((e) => e.device), p2.next]).toEqual([['rc-c'], ['rc-c'], null]);
    for (const p of [p1, p2]) {
      expect(p.versions).toEqual([
        { version: 2, devices: 1 },
        { version: 1, devices: 1 },
      ]);
      expect(p.summary).toEqual({ devices: 3, loadErrors: [{ code: 23, devices: 1 }] });
    }
    const bad = await cli('firmware', 'status', 'sensor-fw', '--limit', '0');
    expect([bad.code, bad.stderr]).toEqual([1, 'device-ca: --limit must be an integer from 1 to 1000\n']);
  });

  it('the admin API mirrors it for the operator (GET /api/v1/firmware/<name>/status); an owner token is refused', async () => {
    const api = (token: string) => curl(`https://localhost:${svc.httpsPort}/api/v1/firmware/sensor-fw/status`, ['-H', `Authorization: Bearer ${token}`]);
    const r = await api(operatorToken);
    expect(r.status).toBe(200);
    const st = JSON.parse(r.text) as { versions: unknown; errors: { device: string }[] };
    expect(st.versions).toEqual([
      { version: 2, devices: 1 },
      { version: 1, devices: 1 },
    ]);
    expect(st.errors.map((e) => e.device)).toEqual(['rc-c']);
    const page = (q: string) => curl(`https://localhost:${svc.httpsPort}/api/v1/firmware/sensor-fw/status?${q}`, ['-H', `Authorization: Bearer ${operatorToken}`]);
    const p1 = JSON.parse((await page('limit=1')).text) as { devices: { device: string }[]; summary: unknown; next: string | null };
    expect([p1.devices.map((d) => d.device), p1.next, p1.summary]).toEqual([['rc-a'], 'rc-a', { devices: 3, loadErrors: [{ code: 23, devices: 1 }] }]);
    const p2 = JSON.parse((await page(`limit=5&after=${p1.next}`)).text) as { devices: { device: string }[]; next: string | null };
    expect([p2.devices.map((d) => d.device), p2.next]).toEqual([['rc-b', 'rc-c'], null]);
    for (const [q, field] of [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=x', 'limit'],
      ['device=rc-a', 'device'],
    ]) {
      const r = await page(q);
      expect([q, r.status, JSON.parse(r.text).error.code]).toEqual([q, 400, 'bad-request']);
      expect(JSON.parse(r.text).error.message).toContain(field);
    }
    const owner = await api((await cliOk('tokens', 'create', '--scope', 'owner:acme')).trim());
    expect([owner.status, JSON.parse(owner.text).error.message]).toEqual([403, 'operator scope required']);
  });

  it('each recorded receipt is one audit record; the chain verifies', async () => {
    const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
    const rows = (db.prepare("SELECT actor, data FROM audit WHERE type = 'firmware.receipt'").all() as { actor: string; data: string }[]).map((r) => [r.actor, JSON.parse(r.data).version]);
    db.close();
    expect(rows).toEqual([
      ['device:rc-a', 1],
      ['device:rc-a', 2],
      ['device:rc-b', 1],
      ['device:rc-c', 1],
    ]);
    expect((await cliOk('audit', 'verify')).startsWith('audit log intact')).toBe(true);
  });
});

describe('GET /firmware/<name>/latest and the hardware a device reported', () => {
  it('a device whose receipts say hwType 1.3.6.1.4.1.99999.1 gets the newest release for it; anyone else the newest', async () => {
    const forB1 = tmp.file('rel/board-1.der');
    const forOther = tmp.file('rel/board-2.der');
    await publish('board-fw', 1, ['--out', forB1], ['--hardware', '1.3.6.1.4.1.99999.1']);
    await publish('board-fw', 2, ['--out', forOther], ['--hardware', '1.3.6.1.4.1.99999.2']);
    const latest = (d?: Device) => curl(`https://localhost:${svc.httpsPort}/firmware/board-fw/latest`, d ? ['--cert', d.crt, '--key', d.key] : []);
    // rc-b posted a receipt for sensor-fw with hwType 1.3.6.1.4.1.99999.1 (built with openssl above)
    const b = await latest(devB);
    expect([b.status, b.headers.get('content-disposition')]).toEqual([200, 'attachment; filename="board-fw-1.cms"']);
    expect(b.body.equals(readFileSync(forB1))).toBe(true);
    // rc-a reported the generic hardware type (the CLI's default): neither release is for it
    const a = await latest(devA);
    expect([a.status, a.text]).toEqual([404, 'no such firmware release\n']);
    // without a client certificate nothing is known about the hardware: the newest, as before
    const anyone = await latest();
    expect([anyone.status, anyone.headers.get('content-disposition')]).toEqual([200, 'attachment; filename="board-fw-2.cms"']);
    expect(anyone.body.equals(readFileSync(forOther))).toBe(true);
    // a named version is served whatever its targets (the agent refuses it)
    expect((await curl(`https://localhost:${svc.httpsPort}/firmware/board-fw/2`, ['--cert', devB.crt, '--key', devB.key])).status).toBe(200);
  });
});
