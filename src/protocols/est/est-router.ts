import * as crypto from 'node:crypto';
import { NextFunction, Request, Response, Router } from 'express';
import { TLSSocket } from 'node:tls';
import { certsOnly } from '../../cms/certs-only';
import { DeviceCaError } from '../../errors/device-ca-error';
import { readRawBody } from '../../http/raw-body';
import { ChannelBinding, EnrollOperation, Proofs, RegistrationAuthority } from '../../ra/registration-authority';
import { EstReplyBase64, decodeEstBody, encodeBase64Body } from './est-body';
import { sendHttpError } from '../http-error-reply';
import { tpmRequest, TPM_AK_BODY, TPM_ACTIVATE_BODY } from './tpm-body';

const CERTS_ONLY = 'application/pkcs7-mime; smime-type=certs-only';
const DEFAULT_LABEL = 'default';

type EstOperation = 'simpleenroll' | 'simplereenroll' | 'serverkeygen';
/** OPERATION: the RA's protocol-neutral name of each EST enrollment operation (RFC 7030 §4.2, §4.4). */
const OPERATION: Record<EstOperation, EnrollOperation> = { simpleenroll: 'enroll', simplereenroll: 'renew', serverkeygen: 'server-keygen' };

export interface EstRouterOptions {
  ra: RegistrationAuthority;
  /**
   * caCerts: the issuing CA first, then root: what /cacerts returns. A function is asked on each request:
   * during an issuing CA rollover it returns both issuing CAs, the active one first (issuing-ca-set.ts).
   */
  caCerts: Buffer[] | (() => Buffer[]);
  bodyLimit: number;
  realm?: string;
  /** replyBase64: label -> how its reply bodies are written (est.labels.<label>.replyBase64); default 'single-line' */
  replyBase64?: ReadonlyMap<string, EstReplyBase64>;
}

/**
 * estRouter is the EST adapter (RFC 7030, RFC 8951), mounted at /.well-known/est. It decodes the
 * request, makes one call into the RA and encodes the reply; it decides nothing itself.
 */
export function estRouter(opts: EstRouterOptions): Router {
  const r = Router({ caseSensitive: true, strict: false });
  const caCerts = typeof opts.caCerts === 'function' ? opts.caCerts : () => opts.caCerts as Buffer[];
  // the encoded /cacerts bodies, re-encoded only when the certificates change
  let cacertsMemo: { certs: Buffer[]; body: Record<EstReplyBase64, string> } | undefined;
  const cacertsBody = (): Record<EstReplyBase64, string> => {
    const certs = caCerts();
    if (!cacertsMemo || cacertsMemo.certs.length !== certs.length || cacertsMemo.certs.some((c, i) => !c.equals(certs[i]))) {
      const der = certsOnly(certs);
      cacertsMemo = { certs, body: { 'single-line': encodeBase64Body(der, 'single-line'), 'wrapped-64': encodeBase64Body(der, 'wrapped-64') } };
    }
    return cacertsMemo.body;
  };
  const realm = opts.realm ?? 'device-ca EST';
  const errorReply = { format: 'text', challenge: `Basic realm="${realm}", charset="UTF-8"` } as const;
  const styleOf = (label: string): EstReplyBase64 => opts.replyBase64?.get(label) ?? 'single-line';

  const handle =
    (name: string, fn: (req: Request, res: Response, profile: string, style: EstReplyBase64) => Promise<void>) =>
    async (req: Request, res: Response): Promise<void> => {
      const label = (req.params.label as string | undefined) ?? DEFAULT_LABEL;
      res.locals.route = `est.${name}`;
      try {
        const profile = opts.ra.profileForLabel(label); // unknown label: 404 before anything else
        await fn(req, res, profile, styleOf(label));
      } catch (e) {
        sendHttpError(res, e, errorReply);
      }
    };

  const cacerts = handle('cacerts', async (_req, res, _profile, style) => sendBase64(res, 200, CERTS_ONLY, cacertsBody()[style]));
  const csrattrs = handle('csrattrs', async (_req, res, profile, style) => sendBase64(res, 200, 'application/csrattrs', encodeBase64Body(opts.ra.csrAttrs(profile), style)));
  const enroll = (op: EstOperation) =>
    handle(op, async (req, res, profile, style) => {
      const ct = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      if (ct !== 'application/pkcs10') throw new DeviceCaError('bad-request', 'Content-Type must be application/pkcs10');
      const csr = decodeEstBody(await readRawBody(req, opts.bodyLimit));
      const out = await opts.ra.enroll({ profile, operation: OPERATION[op], csr, proofs: { ...credentials(req), channelBinding: channelBinding(req) } });
      if (out.status === 'pending') {
        res.setHeader('Retry-After', String(out.retryAfterSeconds));
        sendText(res, 202, `request ${out.requestId} is waiting for approval\n`);
        return;
      }
      const certBody = encodeBase64Body(certsOnly([out.certificate]), style);
      if (op !== 'serverkeygen') return sendBase64(res, 200, CERTS_ONLY, certBody);
      // RFC 7030 §4.4.2: multipart/mixed, the private key (PKCS#8) first, then the certificate
      const boundary = `est-${crypto.randomBytes(12).toString('hex')}`;
      const body =
        `--${boundary}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n${encodeBase64Body(out.privateKeyPkcs8!, style)}` +
        `\r\n--${boundary}\r\nContent-Type: ${CERTS_ONLY}\r\nContent-Transfer-Encoding: base64\r\n\r\n${certBody}` +
        `\r\n--${boundary}--\r\n`; // RFC 2046 §5.1.1: CRLF belongs to the delimiter
      res.status(200).setHeader('Content-Type', `multipart/mixed; boundary=${boundary}`);
      res.setHeader('Content-Length', Buffer.byteLength(body));
      res.end(body);
    });

  // TPM attestation (README "TPM attestation"): JSON in and out, authenticated like an enrollment
  const sendJson = (res: Response, body: unknown): void => {
    const text = JSON.stringify(body);
    res.status(200).setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', Buffer.byteLength(text));
    res.end(text);
  };
  const tpmNonce = handle('tpm.nonce', async (req, res, profile) => {
    const n = await opts.ra.tpmNonce(profile, credentials(req));
    sendJson(res, { nonce: n.nonce.toString('base64'), expiresAt: n.expiresAt.toISOString() });
  });
  const tpmAk = handle('tpm.ak', async (req, res, profile) => {
    const b = tpmRequest(TPM_AK_BODY, await readRawBody(req, opts.bodyLimit));
    const c = await opts.ra.tpmRegisterAk(profile, credentials(req), b);
    sendJson(res, { akName: c.akName.toString('hex'), credentialBlob: c.credentialBlob.toString('base64'), encryptedSecret: c.secret.toString('base64') });
  });
  const tpmActivate = handle('tpm.ak.activate', async (req, res, profile) => {
    const b = tpmRequest(TPM_ACTIVATE_BODY, await readRawBody(req, opts.bodyLimit));
    const a = await opts.ra.tpmActivateAk(profile, credentials(req), b.akName, b.secret);
    sendJson(res, { akName: a.akName, status: a.status, serial: a.serial, certificate: a.certificate.toString('base64') });
  });

  for (const prefix of ['', '/:label']) {
    r.post(`${prefix}/tpm/nonce`, tpmNonce);
    r.post(`${prefix}/tpm/ak`, tpmAk);
    r.post(`${prefix}/tpm/ak/activate`, tpmActivate);
    r.get(`${prefix}/cacerts`, cacerts);
    r.get(`${prefix}/csrattrs`, csrattrs);
    r.post(`${prefix}/simpleenroll`, enroll('simpleenroll'));
    r.post(`${prefix}/simplereenroll`, enroll('simplereenroll'));
    r.post(`${prefix}/serverkeygen`, enroll('serverkeygen'));
    r.all(
      `${prefix}/fullcmc`,
      handle('fullcmc', async () => {
        throw new DeviceCaError('not-implemented', 'fullcmc is not supported');
      }),
    );
  }
  r.use((req: Request, res: Response, _next: NextFunction) => {
    res.locals.route = 'est.unknown';
    sendHttpError(res, new DeviceCaError('not-found', 'unknown EST operation or label'), errorReply);
  });
  return r;
}

function sendBase64(res: Response, status: number, type: string, body: string): void {
  res.status(status);
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Transfer-Encoding', 'base64');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

function sendText(res: Response, status: number, text: string): void {
  res.status(status);
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/**
 * credentials: HTTP Basic (RFC 7617) and the TLS client certificate. getPeerX509Certificate is the one
 * certificate object Node keeps of the peer (about 5 us); its issuerCertificate links are the certificates
 * the peer sent after its leaf, read only when an authenticator asks for them (the bootstrap path).
 * getPeerCertificate(true) decoded the whole chain into JS objects with fingerprints (about 0.3 ms of CPU,
 * 5% of a re-enrollment's server time), and may not be called after getPeerX509Certificate: the latter
 * takes the peer's chain apart.
 */
function credentials(req: Request): Proofs {
  const c: Proofs = {};
  const h = req.headers.authorization;
  if (h && /^basic /i.test(h)) {
    const dec = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i > 0) c.secret = { deviceId: dec.slice(0, i), secret: dec.slice(i + 1) };
  }
  const sock = req.socket as TLSSocket;
  if (typeof sock.getPeerX509Certificate !== 'function') return c;
  const leaf = sock.getPeerX509Certificate();
  if (leaf) c.clientCertificate = { leaf, intermediates: () => presentedIntermediates(leaf) };
  return c;
}

/** presentedIntermediates: the DER of the certificates the peer sent after its leaf, in order, at most 5, a repeated one ending the walk. */
function presentedIntermediates(leaf: crypto.X509Certificate): Buffer[] {
  const chain: Buffer[] = [];
  const seen = new Set<string>([leaf.fingerprint256]);
  for (let cur = leaf.issuerCertificate; cur && !seen.has(cur.fingerprint256) && chain.length < 5; cur = cur.issuerCertificate) {
    seen.add(cur.fingerprint256);
    chain.push(cur.raw);
  }
  return chain;
}

/**
 * channelBinding: tls-unique is the first Finished message (RFC 5929 §3.1): the client's on a full
 * handshake. RFC 9266 tls-exporter on TLS 1.3; RFC 8446 §7.5 makes an empty context equal to none.
 */
function channelBinding(req: Request): ChannelBinding {
  const sock = req.socket as TLSSocket;
  if (typeof sock.getProtocol !== 'function') return {};
  if (sock.getProtocol() === 'TLSv1.3') return { tlsExporter: sock.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) };
  const fin = sock.isSessionReused() ? sock.getFinished() : sock.getPeerFinished();
  return fin ? { tlsUnique: fin } : {};
}
