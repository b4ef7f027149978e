import * as crypto from 'node:crypto';
import Module from 'node:module';

/**
 * ocsp-http-whatif is a preload (`node -r .../ocsp-http-whatif.js dist/cli/main.js serve`) that patches the
 * built service in memory to estimate, before anyone edits src/, what a proposed fix of the OCSP path would
 * save. bench/ocsp-http runs it when OCSP_BENCH_WHATIF lists patches, as extra rows beside the real service.
 * It reaches into private methods of dist/ by name: when src/ changes, a patch that no longer applies is
 * reported in the server log ("whatif: ... not applied") rather than silently measuring nothing.
 *
 * Patches (OCSP_BENCH_WHATIF_PATCHES, comma-separated):
 *   issuer    OcspService.issuerOf compares with CertID hashes computed once per issuer and hash algorithm,
 *             instead of two SHA-1 digests (and an SPKI parse) per call, twice per request
 *   status    SqliteStore.certificateStatus answers from an in-process Map after the first read: the upper
 *             bound of any cheaper status read (NOT correct as is: revocations by other processes go unseen)
 *   obs       HttpObservability.middleware does nothing: no request id, metrics or access log line (obs and
 *             quietlog reach only requests served through node:http: the OCSP front, src/http/fast-front.ts,
 *             calls HttpObservability.record itself)
 *   quietlog  HttpObservability keeps request ids and metrics but writes no access line for a successful
 *             request (as if access lines were logged at debug); failures are still logged at error
 *   noredact  the pino logger without `redact` (the access line's fields are fixed and secret-free)
 *   batchsign keys loaded by SoftwareKeyBackend sign in groups: the signatures asked for during one event-loop
 *             turn are made back to back in a setImmediate (as SqliteStore.grouped groups writes), so the
 *             ECDSA code and tables stay in cache instead of being evicted by the HTTP work between two signs
 */

const patches = new Set((process.env.OCSP_BENCH_WHATIF_PATCHES ?? '').split(',').filter(Boolean));
const applied = new Set<string>();
let noRedactPino: unknown;
type Loader = (request: string, parent: unknown, isMain: boolean) => unknown;
const mod = Module as unknown as { _load: Loader };
const load = mod._load;

interface CertIdLike {
  hash: string;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
}
interface IssuerLike {
  ca: { subject: Buffer };
  spki: Buffer;
}

function spkiKeyBits(spki: Buffer): Buffer {
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING }
  const lenOf = (b: Buffer, p: number): [number, number] => {
    const l = b[p + 1];
    if (l < 0x80) return [l, p + 2];
    let n = 0;
    for (let i = 0; i < (l & 0x7f); i++) n = n * 256 + b[p + 2 + i];
    return [n, p + 2 + (l & 0x7f)];
  };
  const [, inner] = lenOf(spki, 0);
  const [algLen, algStart] = lenOf(spki, inner);
  const [bitsLen, bitsStart] = lenOf(spki, algStart + algLen);
  return spki.subarray(bitsStart + 1, bitsStart + bitsLen);
}

mod._load = function (this: unknown, request: string, parent: unknown, isMain: boolean) {
  const m = load.call(this, request, parent, isMain) as Record<string, unknown>;
  if (patches.has('issuer') && !applied.has('issuer') && /ocsp-service$/.test(request) && m.OcspService) {
    const proto = (m.OcspService as { prototype: Record<string, unknown> }).prototype;
    if (typeof proto.issuerOf === 'function') {
      proto.issuerOf = function (this: { issuers: IssuerLike[]; __whatif?: Map<string, { ca: unknown; name: Buffer; key: Buffer }[]> }, id: CertIdLike) {
        const byHash = (this.__whatif ??= new Map());
        let per = byHash.get(id.hash);
        if (!per) {
          per = this.issuers.map((i) => ({ ca: i.ca, name: crypto.createHash(id.hash).update(i.ca.subject).digest(), key: crypto.createHash(id.hash).update(spkiKeyBits(i.spki)).digest() }));
          byHash.set(id.hash, per);
        }
        for (const p of per) if (p.name.equals(id.issuerNameHash) && p.key.equals(id.issuerKeyHash)) return p.ca;
        return undefined;
      };
      applied.add('issuer');
    }
  }
  if (patches.has('status') && !applied.has('status') && /sqlite-store$/.test(request) && m.SqliteStore) {
    const proto = (m.SqliteStore as { prototype: Record<string, (s: string) => Promise<unknown>> }).prototype;
    const orig = proto.certificateStatus;
    if (typeof orig === 'function') {
      const seen = new Map<string, unknown>();
      proto.certificateStatus = async function (this: unknown, serial: string) {
        if (!seen.has(serial)) seen.set(serial, await orig.call(this, serial));
        return seen.get(serial);
      };
      applied.add('status');
    }
  }
  if (patches.has('batchsign') && !applied.has('batchsign') && /software-key-backend$/.test(request) && m.SoftwareKeyBackend) {
    type Key = { sign(data: Buffer): Promise<Buffer> };
    const proto = (m.SoftwareKeyBackend as { prototype: { load(this: unknown, ref: string): Promise<Key> } }).prototype;
    const loadKey = proto.load;
    proto.load = async function (this: unknown, ref: string) {
      const key = await loadKey.call(this, ref);
      const sign = key.sign.bind(key);
      let queue: { data: Buffer; resolve: (b: Buffer) => void; reject: (e: unknown) => void }[] = [];
      key.sign = (data: Buffer) =>
        new Promise<Buffer>((resolve, reject) => {
          queue.push({ data, resolve, reject });
          if (queue.length === 1)
            setImmediate(() => {
              const batch = queue;
              queue = [];
              for (const j of batch) sign(j.data).then(j.resolve, j.reject);
            });
        });
      return key;
    };
    applied.add('batchsign');
  }
  if (patches.has('obs') && !applied.has('obs') && /request-context$/.test(request) && m.HttpObservability) {
    const proto = (m.HttpObservability as { prototype: Record<string, unknown> }).prototype;
    proto.middleware = () => (_req: unknown, _res: unknown, next: () => void) => next();
    applied.add('obs');
  }
  if (patches.has('quietlog') && !applied.has('quietlog') && /request-context$/.test(request) && m.HttpObservability) {
    const proto = (m.HttpObservability as { prototype: Record<string, unknown> }).prototype;
    const middleware = proto.middleware as (this: { log: object }) => unknown;
    proto.middleware = function (this: { log: object }) {
      this.log = Object.create(this.log, { info: { value: () => undefined } }) as object;
      return middleware.call(this);
    };
    applied.add('quietlog');
  }
  if (patches.has('noredact') && request === 'pino' && typeof m === 'function') {
    if (!noRedactPino) {
      const pino = m as unknown as ((opts?: Record<string, unknown>, dest?: unknown) => unknown) & Record<string, unknown>;
      noRedactPino = Object.assign((opts?: Record<string, unknown>, dest?: unknown) => {
        const o = opts ? { ...opts } : opts;
        if (o) delete o.redact;
        return pino(o, dest);
      }, pino);
      applied.add('noredact');
    }
    return noRedactPino;
  }
  return m;
};

process.on('exit', () => {
  for (const p of patches) if (!applied.has(p)) process.stderr.write(`whatif: patch ${p} not applied (src changed?)\n`);
});
