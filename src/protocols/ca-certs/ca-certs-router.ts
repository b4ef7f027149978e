import { Request, Response, Router } from 'express';

/**
 * caCertsRouter serves /ca/<ca-name>.crt: DER CA certificates, the target of the AIA caIssuers URL
 * (RFC 5280 §4.2.2.1 expects application/pkix-cert). certs: a function when the set changes while serving
 * (an issuing CA rollover made by another process).
 */
export function caCertsRouter(certs: ReadonlyMap<string, Buffer> | ((name: string) => Buffer | undefined)): Router {
  const lookup = typeof certs === 'function' ? certs : (name: string) => certs.get(name);
  const r = Router();
  r.get('/:file', (req: Request, res: Response) => {
    res.locals.route = 'ca.cert';
    const m = /^(.+)\.crt$/.exec(String(req.params.file));
    const der = m ? lookup(m[1]) : undefined;
    if (!der) {
      res.status(404).type('text/plain').send('unknown CA\n');
      return;
    }
    res.status(200).setHeader('Content-Type', 'application/pkix-cert');
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.setHeader('Content-Length', der.length);
    res.end(der);
  });
  return r;
}
