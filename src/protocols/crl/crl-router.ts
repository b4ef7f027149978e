import { Request, Response, Router } from 'express';
import { CrlPublisher } from '../../ca/crl-publisher';
import { RootCrlInfo } from '../../ca/root-crl';
import { crlToPem } from '../../ca/crl-encoder';
import { DeviceCaError } from '../../errors/device-ca-error';
import { HttpErrorReplyOptions, sendHttpError } from '../http-error-reply';

/** ERROR_REPLY: CRL fetchers (openssl, FreeRADIUS, curl) read short text; nothing here asks for credentials */
const ERROR_REPLY: HttpErrorReplyOptions = { format: 'text', challenge: 'Basic realm="device-ca"' };

/** RootCrlSource: the root CAs' CRLs as the store holds them (signed where each root key lives, root-crl.ts); two during a root rollover. */
export interface RootCrlSource {
  names(): string[];
  current(name: string): Promise<RootCrlInfo | null>;
}

/**
 * crlRouter serves /crl/<ca-name>/<shard>.crl (DER, application/pkix-crl, RFC 5280 §4.2.1.13) and
 * .crl.pem, and each published root's CRL at /crl/<root-name>.crl (.crl.pem). Caching headers never reach past
 * nextUpdate, and stay short because a shard is re-issued within seconds of a revocation (and the root
 * CRL at once by `ca revoke-issuing`).
 */
export function crlRouter(publishers: CrlPublisher[], maxAgeSeconds: number, root?: RootCrlSource): Router {
  const r = Router();
  r.get('/:file', async (req: Request, res: Response) => {
    res.locals.route = 'crl';
    const m = /^(.+)\.crl(\.pem)?$/.exec(String(req.params.file));
    try {
      const name = m && root?.names().includes(m[1]) ? m[1] : null;
      const crl = name ? await root!.current(name) : null;
      if (!crl) throw new DeviceCaError('not-found', 'unknown CRL');
      sendCrl(req, res, crl, `"${name}-${crl.number}"`, Boolean(m![2]), maxAgeSeconds);
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY);
    }
  });
  r.get('/:ca/:file', async (req: Request, res: Response) => {
    res.locals.route = 'crl';
    const pub = publishers.find((p) => p.caName === req.params.ca);
    const m = /^(\d{1,5})\.crl(\.pem)?$/.exec(String(req.params.file));
    if (!pub || !m) {
      sendHttpError(res, new DeviceCaError('not-found', 'unknown CRL'), ERROR_REPLY);
      return;
    }
    try {
      const crl = await pub.current(Number(m[1]));
      sendCrl(req, res, crl, `"${crl.issuer}-${crl.shard}-${crl.number}"`, Boolean(m[2]), maxAgeSeconds);
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY); // an unknown shard is 'not-found'; a signing failure 5xx, detail logged
    }
  });
  return r;
}

/**
 * sendCrl answers one CRL, DER or PEM, with caching headers that never reach past its nextUpdate
 * (Last-Modified, Expires, ETag and If-None-Match -> 304, max-age at most maxAgeSeconds).
 */
function sendCrl(req: Request, res: Response, crl: { der: Buffer; thisUpdate: Date; nextUpdate: Date }, etag: string, pem: boolean, maxAgeSeconds: number): void {
  const left = Math.floor((crl.nextUpdate.getTime() - Date.now()) / 1000);
  res.setHeader('Last-Modified', crl.thisUpdate.toUTCString());
  res.setHeader('Expires', crl.nextUpdate.toUTCString());
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', `public, max-age=${Math.max(0, Math.min(left, maxAgeSeconds))}`);
  if (req.headers['if-none-match'] === etag) {
    res.status(304).end();
    return;
  }
  const body = pem ? Buffer.from(crlToPem(crl.der)) : crl.der;
  res.status(200).setHeader('Content-Type', pem ? 'application/x-pem-file' : 'application/pkix-crl');
  res.setHeader('Content-Length', body.length);
  res.end(body);
}
