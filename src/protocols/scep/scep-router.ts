import * as crypto from 'node:crypto';
import { Request, Response, Router } from 'express';
import { certsOnly } from '../../cms/certs-only';
import { CMS_OID } from '../../cms/cms-algorithms';
import { buildEnvelopedData, openEnvelopedData } from '../../cms/enveloped-data';
import { KeyTransportDecryptor } from '../../cms/rsa-key-transport';
import { buildSignedData, SignedMessage, verifySignedData } from '../../cms/signed-data';
import { DeviceCaError, toDeviceCaError } from '../../errors/device-ca-error';
import { readRawBody } from '../../http/raw-body';
import { SigningKey } from '../../keys/key-backend';
import { RegistrationAuthority } from '../../ra/registration-authority';
import { sendHttpError } from '../http-error-reply';
import { FAIL_INFO_NUMBER, SCEP_FAIL_INFO } from './scep-error-map';
import { CertRepStatus, certRepAttributes, MESSAGE_TYPE, peekScepHeader, ScepHeader, scepHeader } from './scep-message';

/** ScepRa: the RA certificate clients encrypt to, its key (signs the replies) and that key's key transport. */
export interface ScepRa {
  certificate: Buffer;
  key: SigningKey;
  transport: KeyTransportDecryptor;
}

export interface ScepRouterOptions {
  ra: Pick<RegistrationAuthority, 'scepEnroll' | 'scepPoll' | 'scepGetCert' | 'scepGetCrl'>;
  /** scepRa returns the RA in use now: a renewal (CA duties) swaps it without a restart */
  scepRa: () => ScepRa;
  /** caCerts: issuing CA first, then root: GetCACert returns the RA certificate, then these (a function: asked each time) */
  caCerts: Buffer[] | (() => Buffer[]);
  /** nextCaCerts: the pending next issuing CA and the root while a rollover is pending (GetNextCACert), else null */
  nextCaCerts?: () => Buffer[] | null;
  /** paths: SCEP path name (scep.paths) -> the enrollment profile it serves */
  paths: ReadonlyMap<string, string>;
  bodyLimit: number;
}

const DEFAULT_PATH = 'default';
/**
 * CA_CAPS: RFC 8894 §3.5.2, only what is served: POST PKIOperation, RenewalReq, SHA-256/512 digests,
 * AES content encryption, and SCEPStandard (which implies those). CertPoll has no capability keyword: it is
 * answered whenever a PKCSReq was PENDING. DES3 and SHA-1 are accepted from old clients but not offered
 * (§3.5.2 discourages them). GetNextCACert is added while a rollover is pending.
 */
const CA_CAPS = 'POSTPKIOperation\nRenewal\nSHA-256\nSHA-512\nAES\nSCEPStandard\n';
/** KNOWN_TYPES: the pkiMessage types answered (RFC 8894 §3.2.1.2). */
const KNOWN_TYPES: ReadonlySet<string> = new Set([MESSAGE_TYPE.PKCSReq, MESSAGE_TYPE.RenewalReq, MESSAGE_TYPE.CertPoll, MESSAGE_TYPE.GetCert, MESSAGE_TYPE.GetCRL]);
const ERROR_REPLY = { format: 'text', challenge: 'SCEP' } as const;
/**
 * SCEP_OPERATIONS: the operations answered (RFC 8894 §4); any other is labelled scep.unknown in the
 * metrics, so a client cannot create a label value per request.
 */
const SCEP_OPERATIONS: ReadonlySet<string> = new Set(['GetCACaps', 'GetCACert', 'GetNextCACert', 'PKIOperation']);

/**
 * scepRouter is the SCEP adapter (RFC 8894) on the plain HTTP listener: /scep, /scep/<path> and
 * /certsrv/mscep/mscep.dll (where clients preconfigured for Microsoft NDES look). A PKIOperation is
 * decoded (SignedData verified, EnvelopedData opened with the RA key, the CSR's CN and challengePassword
 * read), handed to the RA in one enroll call, and answered with a CertRep signed by the RA key. Every
 * refusal after the message verified, and a signature that does not verify, is a signed CertRep FAILURE
 * (§3.3.2.2); input too broken to address a reply to gets HTTP 400.
 */
export function scepRouter(opts: ScepRouterOptions): Router {
  const r = Router({ caseSensitive: true, strict: false });

  const handle =
    (fixedPath?: string) =>
    async (req: Request, res: Response): Promise<void> => {
      const pathName = fixedPath ?? (req.params.path as string);
      const query = rawQuery(req.originalUrl);
      const operation = query.get('operation') ?? '';
      res.locals.route = `scep.${SCEP_OPERATIONS.has(operation) ? operation : 'unknown'}`;
      try {
        const profile = opts.paths.get(pathName);
        if (profile === undefined) throw new DeviceCaError('not-found', 'unknown SCEP path');
        switch (operation) {
          case 'GetCACaps':
            // GetNextCACert only while a rollover is pending: there is nothing to fetch otherwise
            return send(res, 'text/plain; charset=utf-8', Buffer.from(opts.nextCaCerts?.() ? CA_CAPS + 'GetNextCACert\n' : CA_CAPS));
          case 'GetCACert':
            // RFC 8894 §4.2.1.2: an RA answers with a certs-only SignedData holding the RA and CA certificates
            return send(res, 'application/x-x509-ca-ra-cert', certsOnly([opts.scepRa().certificate, ...(typeof opts.caCerts === 'function' ? opts.caCerts() : opts.caCerts)]));
          case 'GetNextCACert': {
            // RFC 8894 §3.5.2, §4.6: a degenerate certs-only SignedData with the next CA's chain, signed by the RA
            const next = opts.nextCaCerts?.();
            if (!next) throw new DeviceCaError('not-found', 'no CA rollover is pending');
            const ra = opts.scepRa();
            return send(res, 'application/x-x509-next-ca-cert', await buildSignedData({ content: null, signer: { certificate: ra.certificate, key: ra.key }, attributes: [], certificates: next }));
          }
          case 'PKIOperation': {
            const message = req.method === 'GET' ? fromQuery(query.get('message'), opts.bodyLimit) : fromBody(await readRawBody(req, opts.bodyLimit));
            const reply = await pkiOperation(message, profile, res);
            return send(res, 'application/x-pki-message', reply);
          }
          default:
            throw new DeviceCaError('bad-request', 'unknown or missing SCEP operation');
        }
      } catch (e) {
        sendHttpError(res, e, ERROR_REPLY);
      }
    };

  /** pkiOperation answers one pkiMessage with a signed CertRep, or throws (HTTP error) when there is nothing to answer. */
  const pkiOperation = async (ber: Buffer, profile: string, res: Response): Promise<Buffer> => {
    const scepRa = opts.scepRa();
    let msg: SignedMessage;
    try {
      msg = verifySignedData(ber);
    } catch (e) {
      // a signature or algorithm we refuse still gets a signed FAILURE, addressed with the unverified header
      if (e instanceof DeviceCaError && (e.code === 'bad-signature' || e.code === 'bad-algorithm')) return certRep(scepRa, peekScepHeader(ber), failure(e, res), null);
      throw e;
    }
    const header = scepHeader(msg.signer.attributes);
    try {
      const type = header.messageType;
      if (!KNOWN_TYPES.has(type)) throw new DeviceCaError('not-implemented', `SCEP messageType ${type.slice(0, 8)} is not supported`);
      if (msg.contentType !== CMS_OID.data || !msg.content) throw new DeviceCaError('bad-request', 'the pkiMessage carries no pkcsPKIEnvelope');
      // the reply is encrypted to the signer's certificate (RFC 8894 §3.3.2): RSA key transport only
      if (new crypto.X509Certificate(msg.signer.certificate).publicKey.asymmetricKeyType !== 'rsa')
        throw new DeviceCaError('bad-algorithm', 'the signer certificate has no RSA key to encrypt the reply to');
      const envelope = await openEnvelopedData(msg.content, { certificate: scepRa.certificate, key: scepRa.transport });
      const reply = (certs: Buffer[], crls: Buffer[] = []) => certRep(scepRa, header, { status: 'SUCCESS' }, buildEnvelopedData(certsOnly(certs, crls), msg.signer.certificate, envelope.cipher));
      const signerCertificate = msg.signer.certificate;
      // RFC 8894 §3.3.4, §3.3.5: GetCert and GetCRL carry an IssuerAndSerialNumber
      if (type === MESSAGE_TYPE.GetCert) return reply([await opts.ra.scepGetCert({ signerCertificate, issuerAndSerial: envelope.content })]);
      if (type === MESSAGE_TYPE.GetCRL) return reply([], [await opts.ra.scepGetCrl({ issuerAndSerial: envelope.content })]);
      // RFC 8894 §3.3.3: CertPoll (GetCertInitial) carries an IssuerAndSubject under the PKCSReq's transactionID
      const out =
        type === MESSAGE_TYPE.CertPoll
          ? await opts.ra.scepPoll({ profile, transactionId: header.transactionId, signerCertificate, issuerAndSubject: envelope.content })
          : await opts.ra.scepEnroll({ profile, kind: type === MESSAGE_TYPE.PKCSReq ? 'PKCSReq' : 'RenewalReq', transactionId: header.transactionId, signerCertificate, csr: envelope.content });
      if (out.status === 'pending') return certRep(scepRa, header, { status: 'PENDING' }, null);
      return reply([out.certificate]);
    } catch (e) {
      return certRep(scepRa, header, failure(e, res), null);
    }
  };

  for (const [path, fixed] of [
    ['/scep', DEFAULT_PATH],
    ['/scep/:path', undefined],
    ['/certsrv/mscep/mscep.dll', DEFAULT_PATH],
    ['/certsrv/mscep', DEFAULT_PATH],
  ] as const) {
    r.get(path, handle(fixed));
    r.post(path, handle(fixed));
  }
  return r;
}

/** failure turns a refusal into a CertRep FAILURE; a failure of ours (no failInfo) is rethrown for an HTTP 5xx. */
function failure(thrown: unknown, res: Response): CertRepStatus {
  const e = toDeviceCaError(thrown);
  const failInfo = SCEP_FAIL_INFO[e.code];
  if (failInfo === null) throw e;
  res.locals.errorCode = e.code;
  return { status: 'FAILURE', failInfo: FAIL_INFO_NUMBER[failInfo], text: e.message };
}

/**
 * certRep signs a CertRep (RFC 8894 §3.3.2) with the RA key; content: the EnvelopedData of a SUCCESS.
 * FAILURE and PENDING carry no pkcsPKIEnvelope, but an empty eContent rather than none: clients that
 * verify with OpenSSL's PKCS7_verify (certmonger, sscep) reject a reply without content ("no content").
 */
function certRep(scepRa: ScepRa, request: ScepHeader, status: CertRepStatus, content: Buffer | null): Promise<Buffer> {
  return buildSignedData({
    content: content ?? Buffer.alloc(0),
    signer: { certificate: scepRa.certificate, key: scepRa.key },
    attributes: certRepAttributes(request, status),
    certificates: [scepRa.certificate],
  });
}

/**
 * rawQuery splits the query string itself: clients send message= as base64 that is %-encoded (certmonger)
 * or not, and a form decoder would turn an unencoded '+' into a space (RFC 8894 §4.1 only says "URL
 * encoded"). Only '%XX' escapes are decoded; the first occurrence of a name wins.
 */
function rawQuery(url: string): Map<string, string> {
  const q = new Map<string, string>();
  const i = url.indexOf('?');
  if (i < 0) return q;
  for (const part of url.slice(i + 1).split('&')) {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    if (q.has(name)) continue;
    try {
      q.set(name, decodeURIComponent(eq < 0 ? '' : part.slice(eq + 1)));
    } catch {
      throw new DeviceCaError('bad-request', 'the query string is not valid %-encoding');
    }
  }
  return q;
}

/** fromQuery decodes GET PKIOperation's message= (base64, RFC 8894 §4.3), within the body limit. */
function fromQuery(message: string | undefined, limit: number): Buffer {
  if (!message) throw new DeviceCaError('bad-request', 'PKIOperation needs message=');
  if (message.length > Math.ceil((limit * 4) / 3) + 4) throw new DeviceCaError('too-large', `message larger than ${limit} bytes`);
  return strictBase64(message.replace(/\s+/g, ''));
}

/** fromBody: POST PKIOperation carries the DER pkiMessage (RFC 8894 §4.3); some clients send it base64. */
function fromBody(body: Buffer): Buffer {
  if (body.length === 0) throw new DeviceCaError('bad-request', 'PKIOperation body is empty');
  return body[0] === 0x30 ? body : strictBase64(body.toString('latin1').replace(/\s+/g, ''));
}

function strictBase64(s: string): Buffer {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) throw new DeviceCaError('bad-request', 'message is not base64');
  return Buffer.from(s, 'base64');
}

function send(res: Response, type: string, body: Buffer): void {
  res.status(200);
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', body.length);
  res.end(body);
}
