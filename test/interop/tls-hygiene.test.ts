import * as fs from 'node:fs';
import * as net from 'node:net';
import { openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * TLS on the HTTPS listener, judged by openssl s_client and a raw TCP client: only Mozilla "intermediate"
 * suites (no CBC with SHA-1 MACs, no CCM8, no ARIA), a handshake timeout (https.handshakeTimeout, 1 s
 * here), and a log line with the peer address for a handshake that fails, e.g. on a client certificate
 * whose signature is broken.
 */

let svc: RunningService;
let tmp: TmpDir;
const { enroll, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp });

beforeAll(async () => {
  tmp = makeTmpDir('device-ca-tls-');
  svc = await startService({ configYaml: ['https:', '  handshakeTimeout: 1s', ''].join('\n') });
});
afterAll(teardown);

/** sClient: `openssl s_client` that sends one HTTP request and reads what comes back; output and exit code */
async function sClient(...args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${svc.httpsPort}`, '-servername', 'localhost', '-CAfile', svc.chainPem, '-ign_eof', ...args], {
    input: 'GET /.well-known/est/cacerts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
    timeoutMs: 20_000,
  });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** failureLines: the service's "TLS handshake failed" log lines so far */
function failureLines(): { remote?: string; code?: string; reason?: string; msg: string }[] {
  return svc
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { remote?: string; code?: string; reason?: string; msg: string })
    .filter((l) => l.msg === 'TLS handshake failed');
}

async function waitForFailure(pred: (l: ReturnType<typeof failureLines>[number]) => boolean): Promise<ReturnType<typeof failureLines>[number]> {
  for (let i = 0; i < 100; i++) {
    const hit = failureLines().find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no matching "TLS handshake failed" line in:\n${svc.logs()}`);
}

describe('cipher suites (TLS 1.2)', () => {
  it.each(['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'])('%s: accepted, and the request is answered', async (cipher) => {
    const r = await sClient('-tls1_2', '-cipher', cipher);
    expect(r.out).toContain(`Cipher is ${cipher}`);
    expect(r.out).toContain('HTTP/1.1 200 OK');
  });

  it.each(['AES128-SHA', 'AES256-SHA', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-ARIA128-GCM-SHA256'])(
    '%s: refused with a handshake failure, and the refusal is logged with the peer address',
    async (cipher) => {
      const before = failureLines().length;
      const r = await sClient('-tls1_2', '-cipher', cipher);
      expect(r.code).not.toBe(0);
      expect(r.out).toMatch(/alert handshake failure|no shared cipher|no ciphers available/);
      expect(r.out).not.toContain('HTTP/1.1 200');
      await waitForFailure(() => failureLines().length > before);
      expect(
        failureLines()
          .slice(before)
          .some((l) => /no.shared.cipher/i.test(l.reason ?? '') && /127\.0\.0\.1$/.test(l.remote ?? '')),
      ).toBe(true);
    },
  );

  it('TLS 1.3 still works (its suites are in the list too)', async () => {
    const r = await sClient('-tls1_3');
    expect(r.out).toMatch(/New, TLSv1.3, Cipher is TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)/);
    expect(r.out).toContain('HTTP/1.1 200 OK');
  });
});

describe('handshake timeout', () => {
  it('a TCP connection that never starts TLS is closed by the server (https.handshakeTimeout) and logged', async () => {
    const sock = net.connect(svc.httpsPort, '127.0.0.1');
    const closed = await new Promise<'closed' | 'still open'>((resolve) => {
      // the default before this setting kept such a connection for minutes; 15 s is far above the 1 s configured
      const t = setTimeout(() => resolve('still open'), 15_000);
      sock.on('close', () => {
        clearTimeout(t);
        resolve('closed');
      });
      sock.on('error', () => undefined);
    });
    sock.destroy();
    expect(closed).toBe('closed');
    const line = await waitForFailure((l) => l.code === 'ERR_TLS_HANDSHAKE_TIMEOUT');
    expect(line.remote).toMatch(/127\.0\.0\.1$/);
  });
});

describe('a client certificate with a bad signature', () => {
  it('the connection is refused and the failure is logged with the peer address', async () => {
    const dev = await enroll('tls-dev-1', 'acme', 'cli');
    // flip a bit in the certificate's signature value
    const der = tmp.file('bad/dev.der');
    fs.mkdirSync(tmp.file('bad'), { recursive: true });
    await openssl('x509', '-in', dev.crt, '-outform', 'DER', '-out', der);
    const bytes = fs.readFileSync(der);
    bytes[bytes.length - 5] ^= 0x55;
    fs.writeFileSync(der, bytes);
    const bad = tmp.file('bad/dev.crt');
    await openssl('x509', '-inform', 'DER', '-in', der, '-out', bad);
    const v = await runProcess('openssl', ['verify', '-CAfile', svc.chainPem, bad]);
    expect(v.stdout + v.stderr).toContain('certificate signature failure'); // the certificate really is broken

    const before = failureLines().length;
    const r = await sClient('-tls1_2', '-cert', bad, '-key', dev.key);
    expect(r.out).not.toContain('HTTP/1.1 200');
    await waitForFailure(() => failureLines().length > before);
    const line = failureLines()[before];
    expect(line.remote).toMatch(/127\.0\.0\.1$/);
    expect(line.reason).toBeTruthy();
  });
});
