import { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { OcspService } from '../../../../src/ca/ocsp-service';
import { DeviceCaError, ErrorCode } from '../../../../src/errors/device-ca-error';
import { createHttpListener } from '../../../../src/http/listeners';
import { OCSP_ERROR_STATUS } from '../../../../src/protocols/ocsp/ocsp-error-map';
import { ocspRoute } from '../../../../src/protocols/ocsp/ocsp-handler';
import { HTTP_ERROR_STATUS } from '../../../../src/protocols/http-error-status';

/**
 * OCSP_ERROR_STATUS and the OCSP handler: a DeviceCaError thrown while answering reaches the client as an
 * OCSPResponse whose responseStatus (RFC 6960 §4.2.1) the map names, in an HTTP 200; a failure of ours is
 * in the log under the request id the client saw, and counted.
 */

/** the OCSPResponse of each error status: SEQUENCE { ENUMERATED status } and no responseBytes */
const REPLY = { malformedRequest: '30030a0101', internalError: '30030a0102', tryLater: '30030a0103', unauthorized: '30030a0106' };

const EXPECTED: [ErrorCode, keyof typeof REPLY][] = [
  ['bad-request', 'malformedRequest'],
  ['bad-csr', 'malformedRequest'],
  ['bad-key', 'malformedRequest'],
  ['bad-algorithm', 'malformedRequest'],
  ['bad-signature', 'malformedRequest'],
  ['too-large', 'malformedRequest'],
  ['not-implemented', 'malformedRequest'],
  ['unauthenticated', 'unauthorized'],
  ['forbidden', 'unauthorized'],
  ['not-found', 'unauthorized'],
  ['rate-limited', 'tryLater'],
  ['key-backend', 'tryLater'],
  ['store-unavailable', 'tryLater'],
  ['ca-unavailable', 'tryLater'],
  ['conflict', 'internalError'],
  ['config', 'internalError'],
  ['internal', 'internalError'],
];

const SECRET = 'slot 0 CKR_DEVICE_REMOVED /var/lib/softhsm/tokens';

describe('OCSP_ERROR_STATUS', () => {
  it('names a status for every error code (the same codes as the HTTP table)', () => {
    expect(Object.keys(OCSP_ERROR_STATUS).sort()).toEqual(Object.keys(HTTP_ERROR_STATUS).sort());
    expect(EXPECTED.map(([c]) => c).sort()).toEqual(Object.keys(OCSP_ERROR_STATUS).sort());
  });
});

describe('ocspHandler answers a thrown error with the mapped OCSPResponseStatus', () => {
  let url: string;
  let close: () => Promise<void>;
  let failure: unknown;
  let calls = 0;
  const logs: Record<string, unknown>[] = [];
  const registry = new Registry();

  beforeAll(async () => {
    const log = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) });
    const service = {
      respond: async () => {
        calls++;
        throw failure;
      },
    } as unknown as OcspService;
    const server = createHttpListener({
      mounts: [],
      fast: [ocspRoute(service, { maxRequestBytes: 1024, maxAgeSeconds: 60, registry })],
      registry,
      log,
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ocsp`;
    close = () => new Promise<void>((r) => server.close(() => r()));
  });
  afterAll(() => close());

  const post = async (): Promise<{ status: number; type: string | null; der: string; reqId: string }> => {
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/ocsp-request' }, body: Buffer.from('3003020101', 'hex') });
    return { status: r.status, type: r.headers.get('content-type'), der: Buffer.from(await r.arrayBuffer()).toString('hex'), reqId: r.headers.get('x-request-id')! };
  };
  const logOf = async (reqId: string): Promise<Record<string, unknown>> => {
    for (const end = Date.now() + 10_000; Date.now() < end;) {
      const l = logs.find((x) => x.reqId === reqId);
      if (l) return l;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no log line for ${reqId}`);
  };

  it.each(EXPECTED)('%s -> %s', async (code, status) => {
    failure = new DeviceCaError(code, `failed: ${code}`, { detail: SECRET });
    const r = await post();
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/ocsp-response');
    expect(r.der).toBe(REPLY[status]);
    const line = await logOf(r.reqId);
    expect(line.code).toBe(code);
    if (status === 'internalError' || status === 'tryLater') {
      // a failure of ours: logged at error level with its detail under the request id the client saw
      expect(line.level).toBe(50);
      expect((line.err as { detail: string }).detail).toBe(SECRET);
    } else {
      expect(line.level).toBe(20); // the OCSP route logs its ordinary answers at debug, counted in metrics
    }
  });

  it('anything else thrown is internalError, logged with its message and counted as error', async () => {
    const before = await outcomes();
    failure = new RangeError(`offset out of range (${SECRET})`);
    const r = await post();
    expect(r.der).toBe(REPLY.internalError);
    expect(((await logOf(r.reqId)).err as { detail: string }).detail).toContain(SECRET);
    expect((await outcomes()).error - (before.error ?? 0)).toBe(1);
  });

  it('a GET that is not base64: malformedRequest without asking the service', async () => {
    const n = calls;
    const r = await fetch(`${url}/not*base64!`);
    expect(Buffer.from(await r.arrayBuffer()).toString('hex')).toBe(REPLY.malformedRequest);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(calls).toBe(n);
  });

  async function outcomes(): Promise<Record<string, number>> {
    const m = (await registry.getSingleMetric('device_ca_ocsp_responses_total')!.get()).values;
    const out: Record<string, number> = {};
    for (const v of m) out[String(v.labels.outcome)] = (out[String(v.labels.outcome)] ?? 0) + v.value;
    return out;
  }
});
