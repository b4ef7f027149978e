import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import { HttpReply, HttpTransport, parseHttpResponse, readHttpResponseFile } from './http-reply';
import { hex } from './tpm-tools';

/**
 * OpensslTlsTransport: HTTPS with a TLS client certificate whose key stays in the TPM. Node's TLS cannot
 * sign with a key it does not hold, so the request goes through `openssl s_client` with the tpm2
 * provider (Debian package tpm2-openssl) loading the persistent key by `handle:0x81...`, TPM reached
 * through TPM2OPENSSL_TCTI (set to the agent's TCTI). The server's chain is checked against the trust file
 * and its name against the URL's host (-verify_return_error, -verify_hostname). One request per
 * connection (Connection: close): s_client -quiet reads until the server closes.
 */
export class OpensslTlsTransport implements HttpTransport {
  constructor(
    private readonly o: {
      trustFile: string;
      certFile: string;
      keyHandle: number;
      tcti: string; /** afterUse: frees the TPM's transient objects before and after openssl used it (no resource manager: swtpm) */
      afterUse?: () => void;
    },
  ) {}

  request(method: 'GET' | 'POST', url: URL, headers: Record<string, string>, body?: Buffer): Promise<HttpReply> {
    const out: Buffer[] = [];
    return this.exchange(method, url, headers, body, (c) => out.push(c)).then(() => parseHttpResponse(Buffer.concat(out)));
  }

  /**
   * download is a GET whose response goes to a file as it arrives (a firmware release: memory holds a
   * chunk, not the image); the body ends up alone in `bodyFile` (readHttpResponseFile).
   */
  async download(url: URL, headers: Record<string, string>, bodyFile: string): Promise<Omit<HttpReply, 'body'>> {
    const raw = `${bodyFile}.http`;
    const fd = fs.openSync(raw, 'w', 0o600);
    try {
      await this.exchange('GET', url, headers, undefined, (c) => {
        for (let p = 0; p < c.length;) p += fs.writeSync(fd, c, p, c.length - p);
      });
    } finally {
      fs.closeSync(fd);
    }
    try {
      return readHttpResponseFile(raw, bodyFile);
    } finally {
      fs.rmSync(raw, { force: true });
    }
  }

  /** exchange sends one request through openssl s_client and hands every piece of the raw response to `onData`. */
  private exchange(method: 'GET' | 'POST', url: URL, headers: Record<string, string>, body: Buffer | undefined, onData: (c: Buffer) => void): Promise<void> {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port || '443';
    const head =
      `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n` +
      Object.entries({ ...headers, ...(body ? { 'Content-Length': String(body.length) } : {}) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n';
    const args = ['s_client', '-quiet', '-connect', `${isIP(host) === 6 ? `[${host}]` : host}:${port}`, '-verify_return_error', '-CAfile', this.o.trustFile];
    args.push(...(isIP(host) ? ['-verify_ip', host] : ['-servername', host, '-verify_hostname', host]));
    // tpm2 first: the signature must come from the provider that holds the key (a query preferring the
    // default provider exports only the public half). tpm2-openssl 1.1 then also hashes in the TPM, with
    // more sequence objects than a TPM has slots: it needs a resource manager (tpmrm0, tpm2-abrmd).
    args.push('-cert', this.o.certFile, '-key', `handle:${hex(this.o.keyHandle)}`, '-provider', 'tpm2', '-provider', 'default');
    this.o.afterUse?.();
    return new Promise((resolve, reject) => {
      const child = spawn('openssl', args, { env: { ...process.env, TPM2OPENSSL_TCTI: this.o.tcti }, stdio: ['pipe', 'pipe', 'pipe'] });
      let received = 0;
      let failed: Error | null = null;
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => {
        received += c.length;
        if (failed) return;
        try {
          onData(c);
        } catch (e) {
          failed = e as Error; // a full disk: reported when openssl ends
        }
      });
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.on('error', (e) => reject(new Error(`openssl: ${e.message}`)));
      child.on('close', (code) => {
        this.o.afterUse?.();
        if (failed) {
          reject(failed);
          return;
        }
        if (received === 0) {
          const stderr = Buffer.concat(err).toString('utf8');
          if (/out of memory for object contexts/.test(stderr)) {
            reject(new Error(`TLS with the TPM key ran out of TPM object slots: the tpm2 provider needs a resource manager (TPM2TOOLS_TCTI device:/dev/tpmrm0 or tabrmd, not "${this.o.tcti}")`));
            return;
          }
          const why = stderr.trim().split('\n').slice(-3).join('; ');
          reject(new Error(`TLS with the TPM key failed (openssl s_client exit ${code}): ${why || 'no reply'}`));
          return;
        }
        resolve();
      });
      child.stdin.end(Buffer.concat([Buffer.from(head, 'latin1'), body ?? Buffer.alloc(0)]));
    });
  }
}
