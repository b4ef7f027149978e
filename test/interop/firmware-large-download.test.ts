import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Device, header, openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Large firmware releases downloaded (issue 13): a multi-MiB release is stored in 1 MiB chunks and
 * streamed; curl receives exactly the bytes `firmware release --out` wrote, with a Content-Length, on the
 * plain HTTP listener and, encrypted, over mTLS with the device's certificate; a client that gives up half
 * way does not disturb the next download.
 */

let svc: RunningService;
let tmp: TmpDir;
let operatorToken: string;
const { cliOk, curl, enroll, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, operatorToken: () => operatorToken });
let device: Device;
let plain: string;
let encrypted: string;

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-fw-large-');
  svc = await startService();
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  device = await enroll('big-a', 'acme');
  const image = tmp.write('image.bin', crypto.randomBytes((6 << 20) + 5));
  let pkg = tmp.file('pkg/0.der');
  const offline = async (...args: string[]): Promise<void> => {
    const r = await runCli(args, {});
    if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')}: ${r.stderr}`);
  };
  await offline('firmware', 'create', '--image', image, '--name', 'big-fw', '--version', '1', '--out', pkg);
  for (const role of ['manufacturer', 'developer', 'administrator']) {
    const key = tmp.file(`signers/${role}.key`);
    const csr = tmp.file(`signers/${role}.csr`);
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-1`, '-out', csr);
    const crt = tmp.write(`signers/${role}.crt`, await cliOk('signers', 'add', `${role}-1`, '--role', role, '--csr', csr));
    const out = tmp.file(`pkg/${role}.der`);
    await offline('firmware', 'sign', '--in', pkg, '--cert', crt, '--key', key, '--out', out);
    pkg = out;
  }
  plain = tmp.file('rel/plain.der');
  encrypted = tmp.file('rel/encrypted.der');
  await cliOk('firmware', 'release', '--in', pkg, '--out', plain);
  await cliOk('firmware', 'release', '--in', pkg, '--encrypt-to', 'big-a', '--out', encrypted); // the same version, re-released encrypted
}, 180_000);

afterAll(teardown);

describe('a multi-MiB release, streamed from the store', () => {
  it('encrypted, over mTLS with the device certificate: curl gets the exact bytes `firmware release` wrote, with their Content-Length', async () => {
    const want = fs.readFileSync(encrypted);
    expect(want.length).toBeGreaterThan(6 << 20);
    const r = await curl(`https://localhost:${svc.httpsPort}/firmware/big-fw/latest`, ['--cert', device.crt, '--key', device.key]);
    expect(r.status).toBe(200);
    expect(header(r, 'content-length')).toBe(String(want.length));
    expect(header(r, 'transfer-encoding')).toBeUndefined();
    expect(sha(r.body)).toBe(sha(want));
    // the encrypted release is not served on the plain listener
    expect((await curl(`http://localhost:${svc.httpPort}/firmware/big-fw/1`)).status).toBe(404);
  });

  it('plain, on the HTTP listener: the exact bytes, and a client that stops half way does not disturb the next download', async () => {
    await cliOk('firmware', 'release', '--in', tmp.file('pkg/administrator.der'), '--out', plain); // re-released plain
    const want = fs.readFileSync(plain);
    // a client that gives up half way: it reads the head and 1 MiB, then closes its connection (a raw socket: curl's
    // --limit-rate with --max-time did not hold a loaded machine's download back, and curl then got it all)
    const partial = await new Promise<{ head: string; got: number }>((resolve, reject) => {
      const sock = net.connect(svc.httpPort, 'localhost', () => sock.write('GET /firmware/big-fw/latest HTTP/1.1\r\nHost: localhost\r\n\r\n'));
      let buf = Buffer.alloc(0);
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0 && buf.length - end - 4 >= 1 << 20) {
          sock.destroy();
          resolve({ head: buf.subarray(0, end).toString('latin1'), got: buf.length - end - 4 });
        }
      });
      sock.on('error', reject);
      sock.on('end', () => reject(new Error('the server ended the download before 1 MiB')));
    });
    expect(partial.head).toMatch(new RegExp(`^HTTP/1\\.1 200 [^]*\r\ncontent-length: ${want.length}(\r\n|$)`, 'i'));
    expect(partial.got).toBeLessThan(want.length);
    const r = await curl(`http://localhost:${svc.httpPort}/firmware/big-fw/1`);
    expect(r.status).toBe(200);
    expect(header(r, 'content-length')).toBe(String(want.length));
    expect(sha(r.body)).toBe(sha(want));
    const viaTls = await curl(`https://localhost:${svc.httpsPort}/firmware/big-fw/latest`, ['--cert', device.crt, '--key', device.key]);
    expect(sha(viaTls.body)).toBe(sha(want));
  });
});
