import { Request } from 'express';
import { DeviceCaError } from '../errors/device-ca-error';

/**
 * readRawBody reads a request body up to limit bytes. Over the limit is 'too-large' (413) as soon as
 * Content-Length says so or the stream passes it; nothing is buffered beyond the limit.
 */
export function readRawBody(req: Request, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new DeviceCaError('too-large', `body larger than ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        req.resume(); // drain, so the 413 can be written on this connection
        reject(new DeviceCaError('too-large', `body larger than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks, size));
      done = true;
    });
    req.on('error', (e) => {
      if (!done) reject(new DeviceCaError('bad-request', 'request body could not be read', { cause: e }));
      done = true;
    });
  });
}
