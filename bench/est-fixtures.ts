import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * est-fixtures: what the EST benchmark prepares before the clock starts: the data directory and CA,
 * devices registered with one-time secrets, a pool of enrolled devices (certificate and key) for
 * simplereenroll, and P-256 CSRs. Everything goes through the compiled service (serviceDir), the same
 * code the spawned server runs, in this process and against the same data directory.
 */

/** DistConfig is the part of the service's Config the benchmark reads. */
export interface DistConfig {
  dataDir: string;
  enrollment: { secretHashCost: number };
}

/** DistRa is the part of the RegistrationAuthority the benchmark calls. */
export interface DistRa {
  registerDevice(args: { id: string; owner?: string; actor: string }): Promise<{ secret: string }>;
  enroll(input: {
    profile: string;
    operation: 'enroll';
    csr: Buffer;
    proofs: { secret: { deviceId: string; secret: string } };
  }): Promise<{ status: 'issued'; certificate: Buffer } | { status: 'pending' }>;
}

/** Dist is the service as built by `tsc -p tsconfig.build.json`, loaded at run time from the repository. */
export interface Dist {
  loadConfig(opts: { env: NodeJS.ProcessEnv }): DistConfig;
  openKeyBackend(cfg: DistConfig): { close(): Promise<void> };
  openStore(cfg: DistConfig): { close(): Promise<void> };
  ensureCa(cfg: DistConfig, keys: unknown, store: unknown): Promise<{ created: boolean }>;
  openRegistrationAuthority(cfg: DistConfig): Promise<{ ra: DistRa; store: { activeSecrets(deviceId: string, now: Date): Promise<{ hash: string }[]> }; close(): Promise<void> }>;
}

/** repoRoot finds the device-ca checkout above this file (wherever it was compiled to), else above the working directory. */
export function repoRoot(): string {
  for (const from of [__dirname, process.cwd()]) {
    for (let dir = from; ; dir = path.dirname(dir)) {
      const pkg = path.join(dir, 'package.json');
      if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'device-ca') return dir;
      if (path.dirname(dir) === dir) break;
    }
  }
  throw new Error(`bench/est: no device-ca package.json above ${__dirname} or ${process.cwd()}`);
}

/**
 * serviceDir: the compiled service the benchmark runs. Compiled with tsconfig.bench.json, src/ sits
 * beside bench/ (dist-bench/src), built from the same sources as this benchmark; otherwise dist/ of
 * `tsc -p tsconfig.build.json`. EST_BENCH_SERVICE_DIR names another (e.g. a patched build to compare).
 */
export function serviceDir(root: string): string {
  const sibling = path.join(__dirname, '..', 'src');
  const chosen = process.env.EST_BENCH_SERVICE_DIR;
  for (const dir of chosen ? [path.resolve(chosen)] : [sibling, path.join(root, 'dist')]) if (fs.existsSync(path.join(dir, 'main.js')) && fs.existsSync(path.join(dir, 'cli', 'main.js'))) return dir;
  throw new Error(`bench/est: no compiled service (main.js, cli/main.js) in ${chosen ?? `${sibling} or ${path.join(root, 'dist')}`}; build first: npx tsc -p tsconfig.build.json`);
}

/** loadDist requires the compiled service (serviceDir), the same code the spawned server runs. */
export function loadDist(dir: string): Dist {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const m = require(path.join(dir, 'main.js')) as Omit<Dist, 'loadConfig'>;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const c = require(path.join(dir, 'config', 'load-config.js')) as Pick<Dist, 'loadConfig'>;
  return { loadConfig: c.loadConfig, openKeyBackend: m.openKeyBackend, openStore: m.openStore, ensureCa: m.ensureCa, openRegistrationAuthority: m.openRegistrationAuthority };
}

/** ensureDataDir creates the CA hierarchy (what `device-ca init` does) so the RA can be opened before `serve`. */
export async function ensureDataDir(dist: Dist, env: NodeJS.ProcessEnv): Promise<DistConfig> {
  const cfg = dist.loadConfig({ env });
  const keys = dist.openKeyBackend(cfg);
  const store = dist.openStore(cfg);
  try {
    await dist.ensureCa(cfg, keys, store);
  } finally {
    await store.close();
    await keys.close();
  }
  return cfg;
}

// ---------------------------------------------------------------- CSRs (hand-written DER, RFC 2986)

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const OID_CN = Buffer.from('0603550403', 'hex');
const OID_O = Buffer.from('060355040a', 'hex');
const ECDSA_SHA256 = der(0x30, Buffer.from('06082a8648ce3d040302', 'hex'));

/** csrFor builds a P-256 PKCS#10 request with subject O=owner, CN=id, the subject device-ca itself writes. */
export function csrFor(key: crypto.KeyObject, id: string, owner: string): Buffer {
  const rdn = (oid: Buffer, v: string) => der(0x31, der(0x30, oid, der(0x0c, Buffer.from(v, 'utf8'))));
  const spki = crypto.createPublicKey(key).export({ type: 'spki', format: 'der' });
  const info = der(0x30, Buffer.from('020100', 'hex'), der(0x30, rdn(OID_O, owner), rdn(OID_CN, id)), spki, Buffer.from('a000', 'hex'));
  const sig = crypto.sign('sha256', info, { key, dsaEncoding: 'der' });
  return der(0x30, info, ECDSA_SHA256, der(0x03, Buffer.from([0]), sig));
}

const p256 = (): crypto.KeyObject => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

// ---------------------------------------------------------------- devices

export const OWNER = 'bench-owner';

export interface SecretDevice {
  id: string;
  secret: string;
  csr: Buffer;
}

export interface PoolDevice {
  id: string;
  certPem: string;
  keyPem: string;
  /** csr: same key and subject as the certificate (a renewal, RFC 7030 §4.2.2) */
  csr: Buffer;
}

/** mapLimit runs fn over items with at most `limit` in flight (scrypt runs on the libuv pool). */
async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * registerSecretDevices registers `n` devices through RegistrationAuthority.registerDevice, so each
 * secret is stored the way the service under test stores it (HMAC-SHA-256 now, scrypt in earlier builds),
 * and builds each device's CSR. hashFormat is the stored hash's format, for the row's note.
 */
export async function registerSecretDevices(dist: Dist, env: NodeJS.ProcessEnv, prefix: string, n: number): Promise<{ devices: SecretDevice[]; hashFormat: string }> {
  const h = await dist.openRegistrationAuthority(dist.loadConfig({ env }));
  try {
    const key = p256(); // one key for all: the server does not look for key reuse, and keygen is not what is measured
    const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
    const devices = await mapLimit(ids, 8, async (id) => {
      const { secret } = await h.ra.registerDevice({ id, owner: OWNER, actor: 'bench' });
      return { id, secret, csr: csrFor(key, id, OWNER) };
    });
    const [stored] = await h.store.activeSecrets(ids[0], new Date());
    const p = stored.hash.split('$');
    return { devices, hashFormat: p[0] === 'scrypt' ? `scrypt cost ${p[1]}` : p[0] };
  } finally {
    await h.close();
  }
}

/** enrollPool registers and enrolls `n` devices in process (simpleenroll with their secret), for simplereenroll. */
export async function enrollPool(dist: Dist, env: NodeJS.ProcessEnv, prefix: string, n: number): Promise<PoolDevice[]> {
  const h = await dist.openRegistrationAuthority(dist.loadConfig({ env }));
  try {
    return await mapLimit(
      Array.from({ length: n }, (_, i) => `${prefix}-${i}`),
      8,
      async (id) => {
        const key = p256();
        const csr = csrFor(key, id, OWNER);
        const { secret } = await h.ra.registerDevice({ id, owner: OWNER, actor: 'bench' });
        const out = await h.ra.enroll({ profile: 'default', operation: 'enroll', csr, proofs: { secret: { deviceId: id, secret } } });
        if (out.status !== 'issued') throw new Error(`bench/est: pool enrollment of ${id} did not issue (${out.status})`);
        const certPem = new crypto.X509Certificate(out.certificate).toString();
        return { id, certPem, keyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string, csr };
      },
    );
  } finally {
    await h.close();
  }
}
