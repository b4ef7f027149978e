import { parseSignedDataParts } from '../cms/signed-data-parts';
import { DeviceCaError, ErrorCode } from '../errors/device-ca-error';
import { HttpReply, HttpTransport } from './http-reply';

/** AkChallenge: the reply of POST <label>/tpm/ak, MakeCredential for the device's EK (README "TPM attestation"). */
export interface AkChallenge {
  akName: string;
  credentialBlob: Buffer;
  encryptedSecret: Buffer;
}

/**
 * EstClient speaks to one EST base URL that includes the label (…/.well-known/est/<label>): the TPM
 * routes (JSON) and simpleenroll / simplereenroll (RFC 7030 §4.2, base64 PKCS#10 in, certs-only out).
 * How the device proves itself is the transport's business plus `basic` (HTTP Basic with the device id and
 * one-time secret); a refusal carries the server's reason and a code for the exit status.
 */
export class EstClient {
  private readonly base: URL;
  constructor(
    base: string,
    private readonly transport: HttpTransport,
    private readonly basic?: { id: string; secret: string },
  ) {
    let u: URL;
    try {
      u = new URL(base.replace(/\/+$/, ''));
    } catch {
      throw new DeviceCaError('bad-request', `--est: not a URL: ${base}`);
    }
    if (u.protocol !== 'https:') throw new DeviceCaError('bad-request', `--est must be an https:// URL (EST runs over TLS, RFC 7030 §3.2.1), got ${u.protocol}`);
    this.base = u;
  }

  async nonce(): Promise<Buffer> {
    const r = (await this.json('tpm/nonce', {})) as { nonce?: string };
    if (typeof r.nonce !== 'string') throw new DeviceCaError('bad-request', 'tpm/nonce: the server sent no nonce');
    return Buffer.from(r.nonce, 'base64');
  }

  async registerAk(body: { ekCertificate: Buffer; ekChain: Buffer[]; ekPublic: Buffer; akPublic: Buffer }): Promise<AkChallenge> {
    const r = (await this.json('tpm/ak', {
      ekCertificate: body.ekCertificate.toString('base64'),
      ekChain: body.ekChain.map((c) => c.toString('base64')),
      ekPublic: body.ekPublic.toString('base64'),
      akPublic: body.akPublic.toString('base64'),
    })) as { akName?: string; credentialBlob?: string; encryptedSecret?: string };
    if (typeof r.akName !== 'string' || typeof r.credentialBlob !== 'string' || typeof r.encryptedSecret !== 'string') {
      throw new DeviceCaError('bad-request', 'tpm/ak: the server sent no credential challenge');
    }
    return { akName: r.akName, credentialBlob: Buffer.from(r.credentialBlob, 'base64'), encryptedSecret: Buffer.from(r.encryptedSecret, 'base64') };
  }

  /** activateAk returns the AK certificate (DER) once the server got the secret back. */
  async activateAk(akName: string, secret: Buffer): Promise<Buffer> {
    const r = (await this.json('tpm/ak/activate', { akName, secret: secret.toString('base64') })) as { certificate?: string };
    if (typeof r.certificate !== 'string') throw new DeviceCaError('bad-request', 'tpm/ak/activate: the server sent no AK certificate');
    return Buffer.from(r.certificate, 'base64');
  }

  /** enroll: simpleenroll (or simplereenroll) of a DER CSR; the issued certificate's DER. */
  async enroll(op: 'simpleenroll' | 'simplereenroll', csr: Buffer): Promise<Buffer> {
    const r = await this.send(op, 'application/pkcs10', Buffer.from(csr.toString('base64')));
    if (r.status === 202) {
      throw new DeviceCaError(
        'conflict',
        `${op}: the request waits for an operator's approval (HTTP 202${r.headers['retry-after'] ? `, retry after ${r.headers['retry-after']} s` : ''}): ${reason(r)}; run the agent again once approved`,
      );
    }
    refuseUnlessOk(op, r);
    let certs: Buffer[];
    try {
      certs = parseSignedDataParts(Buffer.from(r.body.toString('latin1').replace(/\s+/g, ''), 'base64')).certificates;
    } catch (e) {
      throw new DeviceCaError('bad-request', `${op}: the reply is not a certs-only PKCS#7: ${(e as Error).message}`);
    }
    if (certs.length === 0) throw new DeviceCaError('bad-request', `${op}: the reply holds no certificate`);
    return certs[0];
  }

  private async json(path: string, body: unknown): Promise<unknown> {
    const r = await this.send(path, 'application/json', Buffer.from(JSON.stringify(body)));
    refuseUnlessOk(path, r);
    try {
      return JSON.parse(r.body.toString('utf8'));
    } catch {
      throw new DeviceCaError('bad-request', `${path}: the reply is not JSON`);
    }
  }

  private async send(path: string, contentType: string, body: Buffer): Promise<HttpReply> {
    const url = new URL(`${this.base.pathname}/${path}`, this.base);
    const headers: Record<string, string> = { 'Content-Type': contentType, Accept: '*/*' };
    if (this.basic) headers.Authorization = `Basic ${Buffer.from(`${this.basic.id}:${this.basic.secret}`).toString('base64')}`;
    try {
      return await this.transport.request('POST', url, headers, body);
    } catch (e) {
      const m = (e as Error).message;
      // Node's TLS verification errors (UNABLE_TO_VERIFY_LEAF_SIGNATURE, SELF_SIGNED_CERT_IN_CHAIN, ...) and altnames mismatches
      const untrusted = /certificate|self.signed|altnames/i.test(m) && !/TPM/.test(m) ? " (the server's TLS certificate does not chain to --trust or does not name the host)" : '';
      throw new DeviceCaError('ca-unavailable', `cannot reach the EST server at ${url.origin}: ${m}${untrusted}`, { cause: e });
    }
  }
}

/** STATUS_CODE: the error code of a refusal by HTTP status (the CLI's exit status follows from it). */
const STATUS_CODE: Record<number, ErrorCode> = {
  400: 'bad-request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not-found',
  409: 'conflict',
  413: 'too-large',
  429: 'rate-limited',
  501: 'not-implemented',
};

/** refuseUnlessOk: a non-200 reply becomes an error that prints the server's own reason. */
function refuseUnlessOk(what: string, r: HttpReply): void {
  if (r.status === 200) return;
  throw new DeviceCaError(STATUS_CODE[r.status] ?? 'internal', `EST server refused ${what} (HTTP ${r.status}): ${reason(r)}`);
}

/** reason: the server's text reply, one line, bounded (the EST error bodies are short text/plain reasons). */
function reason(r: HttpReply): string {
  const t = r.body.toString('utf8').replace(/\s+/g, ' ').trim();
  return t ? t.slice(0, 300) : '(no reason given)';
}
