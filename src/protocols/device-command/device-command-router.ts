import { Request, Response, Router } from 'express';
import { readRawBody } from '../../http/raw-body';
import { DeviceCommands } from '../../ra/device-commands';
import { HttpErrorReplyOptions, sendHttpError } from '../http-error-reply';
import { requesterOf } from '../tls-requester';

/** ERROR_REPLY: agents read short text; a device authenticates with its TLS certificate */
const ERROR_REPLY: HttpErrorReplyOptions = { format: 'text', challenge: 'Basic realm="device-ca"' };

/**
 * deviceCommandRouter: the device side of signed device commands (issue 13), on the HTTPS listener only.
 * GET /device-command?nonce=<hex>: the device's pending command, signed over its nonce (application/cms),
 * or 204 when it has none; the TLS client certificate says which device asks. POST /device-command/report:
 * the agent's signed report (DER CMS SignedData), 201 recorded or 200 the same again. One RA call each;
 * the rules are ra/device-commands.ts's.
 */
export function deviceCommandRouter(opts: { commands: DeviceCommands; bodyLimit: number }): Router {
  const r = Router();
  r.get('/', async (req: Request, res: Response) => {
    res.locals.route = 'device-command';
    try {
      const nonce = typeof req.query.nonce === 'string' ? req.query.nonce : '';
      const got = await opts.commands.fetch({ requester: requesterOf(req), deviceNonce: nonce });
      res.setHeader('Cache-Control', 'no-store');
      if (!got) {
        res.status(204).end();
        return;
      }
      res.status(200).setHeader('Content-Type', 'application/cms');
      res.setHeader('Content-Length', got.der.length);
      res.end(got.der);
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY);
    }
  });
  r.post('/report', async (req: Request, res: Response) => {
    res.locals.route = 'device-command-report';
    try {
      const body = await readRawBody(req, opts.bodyLimit);
      const got = await opts.commands.report(body);
      const s = got.state;
      res.status(got.outcome === 'recorded' ? 201 : 200).json({
        outcome: got.outcome,
        command: s.command,
        nonce: s.nonce,
        state: s.state,
        reason: s.reason,
        reportedAt: s.reportedAt ? s.reportedAt.toISOString() : null,
      });
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY);
    }
  });
  return r;
}
