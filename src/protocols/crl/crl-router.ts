import { Request, Response, Router } from 'express';
import { CrlPublisher } from '../../ca/crl-publisher';
import { crlToPem } from '../../ca/crl-encoder';
import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * crlRouter serves /crl/<ca-name>/<shard>.crl (DER, application/pkix-crl, RFC 5280 §4.2.1.13) and
 * .crl.pem. Caching headers never reach past nextUpdate, and stay short because a shard is re-issued
 * within seconds of a revocation.
 */
export function crlRouter(publishers: CrlPublisher[], maxAgeSeconds: number): Router {
  const r = Router();
  r.get('/:ca/:file', async (req: Request, res: Response) => {
    res.locals.route = 'crl';
    const pub = publishers.find((p) => p.caName === req.params.ca);
    const m = /^(\d{1,5})\.crl(\.pem)?$/.exec(String(req.params.file));
    if (!pub || !m) {
      res.status(404).type('text/plain').send('unknown CRL\n');
      return;
    }
    try {
      const crl = await pub.current(Number(m[1]));
      const etag = `"${crl.issuer}-${crl.shard}-${crl.number}"`;
      const left = Math.floor((crl.nextUpdate.getTime() - Date.now()) / 1000);
      res.setHeader('Last-Modified', crl.thisUpdate.toUTCString());
      res.setHeader('Expires', crl.nextUpdate.toUTCString());
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', `public, max-age=${Math.max(0, Math.min(left, maxAgeSeconds))}`);
      if (req.headers['if-none-match'] === etag) {
        res.status(304).end();
        return;
      }
      const body = m[2] ? Buffer.from(crlToPem(crl.der)) : crl.der;
      res.status(200).setHeader('Content-Type', m[2] ? 'application/x-pem-file' : 'application/pkix-crl');
      res.setHeader('Content-Length', body.length);
      res.end(body);
    } catch (e) {
      if (e instanceof DeviceCaError && e.code === 'not-found') {
        res.status(404).type('text/plain').send('unknown CRL shard\n');
        return;
      }
      res.locals.error = e;
      res.status(503).type('text/plain').send('CRL unavailable\n');
    }
  });
  return r;
}
