import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Device, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The OCSP responder's connection-level front (src/http/fast-front.ts) against real clients on the built
 * service: `openssl ocsp -url` (nonce and no nonce, RFC 5019 GET), curl reusing one connection, curl over
 * HTTP/1.0, pipelined requests on one raw connection mixed with other routes, a chunked body (handed to
 * node:http), and the metrics counting what the front answered.
 */

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let operatorToken: string;
let dev: Device;
let revoked: Device;

const { next, cliOk, enroll, expectOcsp, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, issuingPem: () => issuingPem, operatorToken: () => operatorToken });

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-ocsp-front-');
  svc = await startService();
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  [dev, revoked] = await Promise.all([enroll('dev-front-good'), enroll('dev-front-revoked')]);
  await cliOk('revoke', revoked.serial, '--reason', 'keyCompromise');
}, 60_000);

afterAll(teardown);

/** requestDer: `openssl ocsp -reqout` for the device (no nonce unless asked) */
async function requestDer(d: Device, nonce = false): Promise<string> {
  const file = tmp.file(`ocsp/${next()}.req`);
  await openssl('ocsp', '-issuer', issuingPem, '-cert', d.crt, ...(nonce ? [] : ['-no_nonce']), '-reqout', file);
  return file;
}

/** statusOf: the certificate status openssl reads from a DER OCSPResponse, signature checked against the chain */
async function statusOf(d: Device, response: Buffer): Promise<string> {
  const file = tmp.write(`ocsp/${next()}.resp`, response);
  const r = await opensslAny('ocsp', '-respin', file, '-issuer', issuingPem, '-cert', d.crt, '-CAfile', svc.chainPem, '-no_nonce');
  expect(r.out).toContain('Response verify OK');
  return new RegExp(`${d.crt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: (\\w+)`).exec(r.out)![1];
}

/** replies: the Content-Length framed responses at the start of bytes */
function replies(bytes: Buffer): { status: number; head: string; body: Buffer }[] {
  const out: { status: number; head: string; body: Buffer }[] = [];
  let p = 0;
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', p, 'latin1');
    if (end < 0) return out;
    const head = bytes.toString('latin1', p, end);
    const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (bytes.length < end + 4 + len) return out;
    out.push({ status: Number(head.split(' ')[1]), head, body: bytes.subarray(end + 4, end + 4 + len) });
    p = end + 4 + len;
  }
}

/** rawExchange: writes bytes on one connection and reads until n responses arrived or the server closed */
function rawExchange(bytes: Buffer, n: number): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(svc.httpPort, '127.0.0.1', () => s.write(bytes));
    const got: Buffer[] = [];
    const timer = setTimeout(() => (s.destroy(), reject(new Error('no reply within 10 s'))), 10_000);
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes: Buffer.concat(got), closed });
    };
    s.on('data', (c: Buffer) => {
      got.push(c);
      if (replies(Buffer.concat(got)).length >= n) done(false);
    });
    s.on('end', () => done(true));
    s.on('error', reject);
  });
}

/** keptConnection: one keep-alive connection; ask writes a request and resolves with the body of the next reply */
function keptConnection(): Promise<{ ask(bytes: Buffer): Promise<Buffer>; close(): void }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(svc.httpPort, '127.0.0.1');
    let got = Buffer.alloc(0);
    let taken = 0;
    let waiting: (() => void) | null = null;
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      waiting?.();
    });
    s.on('error', reject);
    s.on('close', () => waiting?.());
    s.on('connect', () =>
      resolve({
        ask: (bytes) =>
          new Promise<Buffer>((res, rej) => {
            const timer = setTimeout(() => rej(new Error('no reply within 10 s')), 10_000);
            waiting = () => {
              const r = replies(got);
              if (r.length <= taken) {
                if (s.destroyed) {
                  clearTimeout(timer);
                  waiting = null;
                  rej(new Error('the server closed the connection before it answered'));
                }
                return;
              }
              clearTimeout(timer);
              waiting = null;
              res(r[taken++].body);
            };
            s.write(bytes);
          }),
        close: () => s.destroy(),
      }),
    );
  });
}

/** HEALTHZ: a keep-alive GET /healthz, which the front hands to node:http */
const HEALTHZ = Buffer.from('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 'latin1');

const ocspPost = (der: Buffer, extra = '') =>
  Buffer.concat([Buffer.from(`POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Content-Type: application/ocsp-request\r\nContent-Length: ${der.length}\r\n\r\n`, 'latin1'), der]);

describe('the OCSP front with real clients', () => {
  it('openssl ocsp -url: good and revoked, with a nonce and without', async () => {
    await expectOcsp(dev, 'good');
    await expectOcsp(dev, 'good', undefined, '-no_nonce');
    await expectOcsp(revoked, 'revoked', 'keyCompromise');
  });

  it('curl: two POSTs on one connection (keep-alive), both answered and verified', async () => {
    const req = await requestDer(dev);
    const url = `http://127.0.0.1:${svc.httpPort}/ocsp`;
    const outs = [tmp.file(`ocsp/${next()}.resp`), tmp.file(`ocsp/${next()}.resp`)];
    const r = await runProcess('curl', [
      '-sv',
      '-H',
      'Content-Type: application/ocsp-request',
      '--data-binary',
      `@${req}`,
      url,
      '-o',
      outs[0],
      '--next',
      '-H',
      'Content-Type: application/ocsp-request',
      '--data-binary',
      `@${req}`,
      url,
      '-o',
      outs[1],
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Re-using existing connection|Reusing existing/);
    for (const o of outs) expect(await statusOf(dev, fs.readFileSync(o))).toBe('good');
  });

  it('curl --http1.0: answered, then the connection is closed', async () => {
    const req = await requestDer(revoked);
    const out = tmp.file(`ocsp/${next()}.resp`);
    const r = await runProcess('curl', ['-sv', '--http1.0', '-H', 'Content-Type: application/ocsp-request', '--data-binary', `@${req}`, `http://127.0.0.1:${svc.httpPort}/ocsp`, '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/< Connection: close/i);
    expect(await statusOf(revoked, fs.readFileSync(out))).toBe('revoked');
  });

  it('curl GET /ocsp/<url-encoded base64> (RFC 5019): cache headers, verified answer', async () => {
    const der = fs.readFileSync(await requestDer(dev));
    const out = tmp.file(`ocsp/${next()}.resp`);
    const r = await runProcess('curl', ['-sv', `http://127.0.0.1:${svc.httpPort}/ocsp/${encodeURIComponent(der.toString('base64'))}`, '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/< Cache-Control: max-age=\d+, public, no-transform, must-revalidate/);
    expect(r.stderr).toMatch(/< ETag: "/);
    expect(await statusOf(dev, fs.readFileSync(out))).toBe('good');
  });

  it('pipelined on one connection: OCSP, /healthz, OCSP with a nonce, a CA certificate, OCSP; answered in order', async () => {
    const a = fs.readFileSync(await requestDer(dev));
    const b = fs.readFileSync(await requestDer(revoked, true));
    const bytes = Buffer.concat([
      ocspPost(a),
      Buffer.from('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 'latin1'),
      ocspPost(b),
      Buffer.from('GET /ca/device-ca-issuing.crt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 'latin1'),
      ocspPost(a, 'Connection: close\r\n'),
    ]);
    const { bytes: got } = await rawExchange(bytes, 5);
    const r = replies(got);
    expect(r.map((x) => x.status)).toEqual([200, 200, 200, 200, 200]);
    expect(await statusOf(dev, r[0].body)).toBe('good');
    expect(r[1].body.toString()).toMatch(/^ok/);
    expect(await statusOf(revoked, r[2].body)).toBe('revoked');
    expect(r[3].body[0]).toBe(0x30); // a DER certificate
    expect(await statusOf(dev, r[4].body)).toBe('good');
  });

  it('a chunked POST is handed to node:http and still answered', async () => {
    const der = fs.readFileSync(await requestDer(dev));
    const head = Buffer.from('POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n', 'latin1');
    const chunk = Buffer.concat([Buffer.from(`${der.length.toString(16)}\r\n`, 'latin1'), der, Buffer.from('\r\n0\r\n\r\n', 'latin1')]);
    const { bytes } = await rawExchange(Buffer.concat([head, chunk]), 1);
    const [r] = replies(bytes);
    expect(r.status).toBe(200);
    expect(await statusOf(dev, r.body)).toBe('good');
  });

  it('a POST over ocsp.maxRequestBytes gets malformedRequest (OCSP over HTTP 200), as before the front', async () => {
    const { bytes } = await rawExchange(ocspPost(Buffer.alloc(70_000, 0x30), 'Connection: close\r\n'), 1);
    const [r] = replies(bytes);
    expect(r.status).toBe(200);
    expect(r.body.toString('hex')).toBe('30030a0101');
  });

  it('one keep-alive connection: the cached answer repeated from memory says revoked on the very next request after the CLI (another process) revoked the certificate', async () => {
    const later = await enroll('dev-front-later');
    const der = fs.readFileSync(await requestDer(later));
    const conn = await keptConnection();
    try {
      const answers: Buffer[] = [];
      for (let i = 0; i < 4; i++) answers.push(await conn.ask(ocspPost(der)));
      for (const a of answers) expect(await statusOf(later, a)).toBe('good');
      expect(answers[3].equals(answers[1])).toBe(true); // the same pre-signed answer, not signed again
      // the server closes a connection idle for 5 s (keepAliveTimeout) and the CLI may take longer on a loaded
      // machine: keep this connection busy with /healthz (node:http, not the OCSP cache) until the CLI returned
      let revoked = false;
      const revoking = cliOk('revoke', later.serial, '--reason', 'keyCompromise').finally(() => (revoked = true));
      while (!revoked) {
        expect((await conn.ask(HEALTHZ)).toString()).toMatch(/^ok/);
        await Promise.race([revoking.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
      }
      await revoking;
      expect(await statusOf(later, await conn.ask(ocspPost(der)))).toBe('revoked');
      expect(await statusOf(later, await conn.ask(ocspPost(der)))).toBe('revoked');
    } finally {
      conn.close();
    }
  });

  it('the metrics count what the front answered', async () => {
    const r = await runProcess('curl', ['-s', `http://127.0.0.1:${svc.httpPort}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith('device_ca_http_requests_total{') && l.includes('route="ocsp"') && l.includes('method="POST"') && l.includes('status="200"'));
    expect(Number(line?.split(' ').pop())).toBeGreaterThanOrEqual(6);
    expect(r.stdout).toMatch(/device_ca_ocsp_responses_total\{method="GET",outcome="good"\} [1-9]/);
  });
});
