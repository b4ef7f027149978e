import * as https from 'node:https';
import { HttpReply, HttpTransport } from './http-reply';

/**
 * NodeHttpsTransport: HTTPS from Node, trusting only the CA chain the agent was given (server name
 * checked). Used before the device has a certificate (HTTP Basic with the one-time secret): no key of the
 * TLS client lives in the TPM yet.
 */
export class NodeHttpsTransport implements HttpTransport {
  constructor(private readonly trustPem: string) {}

  request(method: 'GET' | 'POST', url: URL, headers: Record<string, string>, body?: Buffer): Promise<HttpReply> {
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, ca: this.trustPem, headers: { ...headers, ...(body ? { 'Content-Length': String(body.length) } : {}) }, timeout: 60_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const h: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h[k] = v;
          resolve({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }
}
