import { Readable, pipeline } from 'node:stream';
import { NextFunction, Request, Response, Router } from 'express';
import { readRawBody } from '../../http/raw-body';
import { FirmwareDistribution } from '../../ra/firmware-distribution';
import { FirmwareReceipts } from '../../ra/firmware-receipts';
import { FirmwareGroupKeys } from '../../ra/firmware-group-keys';
import { GROUP_KEY_ID_RE } from '../../cms/firmware-group-key';
import { HttpErrorReplyOptions, sendHttpError } from '../http-error-reply';
import { requesterOf } from '../tls-requester';
import { DeviceCaError } from '../../errors/device-ca-error';

/** ERROR_REPLY: agents and curl read short text; a device authenticates with its TLS certificate, never Basic */
const ERROR_REPLY: HttpErrorReplyOptions = { format: 'text', challenge: 'Basic realm="device-ca"' };

/**
 * firmwareRouter serves GET /firmware/<name>/latest and /firmware/<name>/<version>: the release as DER CMS
 * (application/cms, RFC 7193), streamed from the store with Content-Length. Mounted on the HTTP listener (plain releases only) and on the HTTPS
 * listener, where the TLS client certificate is handed to the RA, which decides what this device may have
 * (ra/firmware-distribution.ts). With `receipts` (the HTTPS listener only: a device authenticates with its
 * certificate) it also takes POST /firmware/<name>/<version>/receipt, an RFC 4108 load receipt or error
 * report (DER CMS SignedData), decided by ra/firmware-receipts.ts. One RA call per request.
 */
export function firmwareRouter(opts: { distribution: FirmwareDistribution; receipts?: { decide: FirmwareReceipts; bodyLimit: number }; groupKeys?: FirmwareGroupKeys }): Router {
  const r = Router();
  const receipts = opts.receipts;
  const groupKeys = opts.groupKeys;
  // GET /firmware/keys/<32 hex digits>: a group key wrapped to the device's certificate (HTTPS only;
  // ra/firmware-group-keys.ts decides). Anything else under /keys/ is a release of a firmware named
  // "keys": a version has at most 16 digits, so the two never meet.
  if (groupKeys)
    r.get('/keys/:id', async (req: Request, res: Response, next: NextFunction) => {
      const id = String(req.params.id);
      if (!GROUP_KEY_ID_RE.test(id)) return next();
      res.locals.route = 'firmware-group-key';
      try {
        const der = await groupKeys.fetch({ keyId: id, requester: requesterOf(req) });
        res.status(200).setHeader('Content-Type', 'application/cms');
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Content-Length', der.length);
        res.end(der);
      } catch (e) {
        sendHttpError(res, e, ERROR_REPLY);
      }
    });
  if (receipts)
    r.post('/:name/:version/receipt', async (req: Request, res: Response) => {
      res.locals.route = 'firmware-receipt';
      try {
        const body = await readRawBody(req, receipts.bodyLimit);
        const got = await receipts.decide.submit({ name: String(req.params.name), version: String(req.params.version), body, requester: requesterOf(req) });
        const rec = got.record;
        res.status(got.outcome === 'recorded' ? 201 : 200).json({
          name: rec.name,
          device: rec.deviceId,
          receipt: got.kind,
          outcome: got.outcome,
          running: rec.running ? { version: rec.running.version, at: rec.running.at.toISOString() } : null,
          error: rec.error ? { ...rec.error, at: rec.error.at.toISOString() } : null,
        });
      } catch (e) {
        sendHttpError(res, e, ERROR_REPLY);
      }
    });
  r.get('/:name/:version', async (req: Request, res: Response) => {
    res.locals.route = 'firmware';
    try {
      const got = await opts.distribution.download({
        name: String(req.params.name),
        version: String(req.params.version),
        requester: requesterOf(req),
        head: req.method === 'HEAD',
      });
      // the first chunk before the head: a release whose bytes cannot be read at all (replaced meanwhile,
      // its chunks missing) still gets an error reply with its reason, not an empty one
      const chunks = req.method === 'HEAD' ? null : got.bytes.chunks()[Symbol.asyncIterator]();
      const first = chunks ? await chunks.next() : null;
      res.status(200).setHeader('Content-Type', 'application/cms');
      // per device and changing with each release: no shared cache may keep it
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Disposition', `attachment; filename="${got.release.name}-${got.release.version}.cms"`);
      res.setHeader('Content-Length', got.bytes.length);
      if (!chunks || !first) {
        res.end();
        return;
      }
      // chunk by chunk as the client takes them (pipeline waits on 'drain'); a client that goes away
      // destroys the stream, which ends the store reads (the iterator's return). A store error after the
      // head was sent can only cut the connection: the client sees fewer bytes than Content-Length.
      // The failure is put where the access line (request-context.ts, written on 'close' as aborted) finds it,
      // before the pipeline destroys the reply: an operator sees why the download was cut.
      const failed = (e: unknown): void => {
        const err = e instanceof DeviceCaError ? e : { code: 'internal', message: e instanceof Error ? e.message : String(e) };
        res.locals.errorCode = err.code;
        res.locals.error = { message: err.message };
      };
      pipeline(Readable.from(continued(first, chunks, failed), { objectMode: false }), res, (err) => {
        if (err && !res.destroyed) res.destroy(err);
      });
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY);
    }
  });
  return r;
}

/**
 * continued: an iteration whose first result was already taken, from that result on; ending it ends `rest`.
 * `failed` hears an error of `rest` before it is thrown on.
 */
async function* continued(first: IteratorResult<Buffer>, rest: AsyncIterator<Buffer>, failed: (e: unknown) => void): AsyncGenerator<Buffer> {
  try {
    for (let r = first; !r.done; r = await rest.next()) yield r.value;
  } catch (e) {
    failed(e);
    throw e;
  } finally {
    await rest.return?.();
  }
}
