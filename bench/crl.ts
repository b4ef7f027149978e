import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KU, assembleCertificate, basicConstraints, encodeTbs, keyIdentifier, keyUsage, newSerial, subjectKeyIdentifier } from '../src/ca/certificate-encoder';
import { certificateParts } from '../src/ca/certificate-parts';
import { CrlReason, RevokedEntry, encodeCrlStream, writeCrlFile } from '../src/ca/crl-encoder';
import { encodeName } from '../src/ca/name';
import { pemBlocks, toPem } from '../src/ca/pem';
import { children, readOne } from '../src/der/der-reader';
import { algorithmOfKey, generateKeyPair, softwareSigningKey } from '../src/keys/software-key-backend';
import { BenchRow } from './bench-table';

/**
 * bench/crl: a CRL shard of N revoked entries, generated, signed (P-256) and written to a file by
 * crl-encoder, beside `openssl ca -gencrl` on the very same entries (an index.txt of N `R` lines).
 * Every run is a fresh process timed by /usr/bin/time (wall and CPU seconds, peak RSS), so both sides
 * pay start-up and neither inherits the other's heap. Ratios are openssl's wall time over ours; the CPU
 * ratio is in the note (steadier on a shared machine). Two device-ca variants:
 *   - index: reads the same index.txt line by line (what openssl does), then encodes; the fair race
 *   - pages: the entries arrive in pages of 4096, as a store would page them; the encoder's own cost
 * The 1M CRL is checked with `openssl crl -CAfile` and its revokedCertificates must equal openssl's
 * byte for byte (same serials, dates and reasons; openssl sorts by serial and ours are ascending).
 *
 *   npx tsc -p tsconfig.json --rootDir . --outDir /tmp/benchbuild && NODE_PATH=$PWD/node_modules node /tmp/benchbuild/bench/crl.js [sizes...]
 */

const OPENSSL = '/usr/bin/openssl';
const TIME = '/usr/bin/time';
const REASONS: (CrlReason | undefined)[] = ['keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged', undefined];
const BASE = Date.UTC(2024, 0, 1);
const PAGE = 4096;

/** Entry i of a run: ascending serials under one random 12-octet prefix, one second apart, reasons in turn. */
function entry(prefix: Buffer, i: number): { serialHex: string; revokedAtMs: number; reason?: CrlReason } {
  const s = Buffer.allocUnsafe(16);
  prefix.copy(s, 0, 0, 12);
  s.writeUInt32BE(i, 12);
  return { serialHex: s.toString('hex').toUpperCase(), revokedAtMs: BASE + i * 1000, reason: REASONS[i % REASONS.length] };
}

const two = (n: number): string => (n < 10 ? '0' : '') + n;
function yymmdd(ms: number): string {
  const d = new Date(ms);
  return two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
}

async function writeIndex(file: string, prefix: Buffer, n: number): Promise<void> {
  const out = fs.createWriteStream(file);
  for (let i = 0; i < n; i += 10_000) {
    let chunk = '';
    for (let j = i; j < Math.min(n, i + 10_000); j++) {
      const e = entry(prefix, j);
      chunk += `R\t491231235959Z\t${yymmdd(e.revokedAtMs)}${e.reason ? ',' + e.reason : ''}\t${e.serialHex}\tunknown\t/CN=dev-${j}\n`;
    }
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}

// ------------------------------------------------------------------ child: one CRL in a fresh process

/** openssl's index spells reasons as its ca.c table does; keyed by first char and length for a cheap lookup. */
const OPENSSL_REASON_NAMES: [string, CrlReason][] = [
  ['unspecified', 'unspecified'],
  ['keyCompromise', 'keyCompromise'],
  ['CACompromise', 'cACompromise'],
  ['affiliationChanged', 'affiliationChanged'],
  ['superseded', 'superseded'],
  ['cessationOfOperation', 'cessationOfOperation'],
  ['certificateHold', 'certificateHold'],
  ['removeFromCRL', 'removeFromCRL'],
];
const REASON_BY_SHAPE = new Map(OPENSSL_REASON_NAMES.map(([text, r]) => [text.charCodeAt(0) * 64 + text.length, r]));

const digit2 = (b: Buffer, p: number): number => (b[p] - 48) * 10 + (b[p + 1] - 48);

/** indexLine parses one `R` line of an openssl index.txt: R \t expiry \t revoked[,reason] \t serial \t file \t subject */
function indexLine(b: Buffer, p: number): RevokedEntry {
  let rev = p + 2;
  while (b[rev] !== 9) rev++;
  rev++;
  let serial = rev + 13;
  while (b[serial] !== 9) serial++;
  const reasonLen = serial - (rev + 14);
  serial++;
  let serialEnd = serial;
  while (b[serialEnd] !== 9) serialEnd++;
  const yy = digit2(b, rev);
  const ms = Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, digit2(b, rev + 2) - 1, digit2(b, rev + 4), digit2(b, rev + 6), digit2(b, rev + 8), digit2(b, rev + 10));
  return {
    serial: b.toString('latin1', serial, serialEnd),
    revokedAt: new Date(ms),
    reason: reasonLen > 0 ? REASON_BY_SHAPE.get(b[rev + 14] * 64 + reasonLen) : undefined,
  };
}

/**
 * indexEntries streams an openssl index.txt as pages of RevokedEntry, scanning bytes (readline costs
 * about a microsecond a line); it holds one read chunk and one page of PAGE entries at a time.
 */
async function* indexEntries(file: string): AsyncIterable<RevokedEntry[]> {
  let rest: Buffer | undefined;
  let page: RevokedEntry[] = [];
  for await (const read of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    const chunk = read as Buffer;
    let p = 0;
    if (rest) {
      // only the line that spans two chunks is copied
      const nl = chunk.indexOf(10);
      if (nl < 0) {
        rest = Buffer.concat([rest, chunk]);
        continue;
      }
      const line = Buffer.concat([rest, chunk.subarray(0, nl + 1)]);
      if (line[0] === 0x52 /* R */) page.push(indexLine(line, 0));
      p = nl + 1;
      rest = undefined;
    }
    const last = chunk.lastIndexOf(10);
    while (p <= last) {
      if (chunk[p] === 0x52) page.push(indexLine(chunk, p));
      while (chunk[p] !== 10) p++;
      p++;
      if (page.length === PAGE) {
        yield page;
        page = [];
      }
    }
    if (p < chunk.length) rest = chunk.subarray(p);
  }
  if (page.length) yield page;
}

async function* pagedEntries(prefix: Buffer, n: number): AsyncIterable<RevokedEntry[]> {
  for (let i = 0; i < n; i += PAGE) {
    const page: RevokedEntry[] = [];
    for (let j = i; j < Math.min(n, i + PAGE); j++) {
      const e = entry(prefix, j);
      page.push({ serial: e.serialHex, revokedAt: new Date(e.revokedAtMs), reason: e.reason });
    }
    yield page;
  }
}

async function child(args: string[]): Promise<void> {
  const [mode, dir, out, nOrIndex, prefixHex] = args;
  const t0 = process.hrtime.bigint();
  const caDer = pemBlocks(fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'))[0];
  const privateKey = crypto.createPrivateKey(fs.readFileSync(path.join(dir, 'ca.key'), 'utf8'));
  const key = softwareSigningKey(privateKey, algorithmOfKey(privateKey), path.join(dir, 'ca.key'));
  const ca = certificateParts(caDer);
  const source = mode === 'index' ? indexEntries(nOrIndex) : pagedEntries(Buffer.from(prefixHex, 'hex'), Number(nOrIndex));
  const now = new Date();
  const crl = await encodeCrlStream(
    {
      issuer: ca.subject,
      authorityKeyId: keyIdentifier(ca.spki),
      crlNumber: 1n,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + 7 * 86_400_000),
      signingKey: key,
      // the store knows COUNT(*); for index.txt the file size bounds it (an index line is > 60 bytes)
      expectedEntries: mode === 'pages' ? Number(nOrIndex) : Math.ceil(fs.statSync(nOrIndex).size / 60),
    },
    source,
  );
  await writeCrlFile(out, crl.der);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  process.stdout.write(JSON.stringify({ ms, entries: crl.entries, bytes: crl.der.length, maxRssKb: process.resourceUsage().maxRSS }) + '\n');
}

// ------------------------------------------------------------------ parent

interface Run {
  /** wall seconds, start-up included */
  seconds: number;
  /** user + system CPU seconds: steadier than wall time on a shared machine */
  cpu: number;
  rssMb: number;
  stdout: string;
}

/** timed runs a command in a fresh process under /usr/bin/time: wall seconds and peak RSS (max of the process). */
function timed(cmd: string, args: string[], cwd: string): Run {
  const tf = path.join(cwd, `time-${process.pid}.txt`);
  const haveTime = fs.existsSync(TIME);
  const t0 = process.hrtime.bigint();
  const r = haveTime
    ? spawnSync(TIME, ['-f', '%e %U %S %M', '-o', tf, cmd, ...args], { cwd, encoding: 'utf8', maxBuffer: 1 << 26 })
    : spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  if (!haveTime) return { seconds: wall, cpu: NaN, rssMb: NaN, stdout: r.stdout };
  const [e, u, sys, m] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  // /usr/bin/time prints 0.01 s steps; the hrtime wall (which adds spawn cost) is the finer figure
  return { seconds: Math.min(wall, Math.max(e, 0.005)), cpu: Math.max(u + sys, 0.005), rssMb: m / 1024, stdout: r.stdout };
}

const revokedList = (der: Buffer): Buffer => {
  const tbs = children(readOne(der, 0x30), 3)[0];
  const f = children(tbs, 8);
  return f.length === 7 ? f[5].full : Buffer.alloc(0);
};

async function makeCa(dir: string): Promise<void> {
  const { privateKey } = generateKeyPair('ecdsa-p256');
  const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
  const name = encodeName([
    { type: 'O', value: 'device-ca bench' },
    { type: 'CN', value: 'CRL bench CA' },
  ]);
  const now = Date.now();
  const tbs = encodeTbs({
    serial: newSerial(),
    signatureAlgorithm: key.signatureAlgorithm,
    issuer: name,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 365 * 86_400_000),
    subject: name,
    spki: key.spki,
    extensions: [basicConstraints(true), keyUsage([KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(keyIdentifier(key.spki))],
  });
  fs.writeFileSync(path.join(dir, 'ca.pem'), toPem(assembleCertificate(tbs, key.signatureAlgorithm, await key.sign(tbs)), 'CERTIFICATE'));
  fs.writeFileSync(path.join(dir, 'ca.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  fs.writeFileSync(
    path.join(dir, 'openssl.cnf'),
    [
      '[ ca ]',
      'default_ca = bench',
      '[ bench ]',
      `dir = ${dir}`,
      'database = $dir/index.txt',
      'crlnumber = $dir/crlnumber',
      'certificate = $dir/ca.pem',
      'private_key = $dir/ca.key',
      'default_md = sha256',
      'default_crl_days = 7',
      'unique_subject = no',
      'crl_extensions = crl_ext',
      '[ crl_ext ]',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n'),
  );
}

const fmtS = (s: number): string => (s < 10 ? s.toFixed(2) : s.toFixed(1)) + ' s';
const fmtMb = (mb: number): string => (Number.isFinite(mb) ? `${Math.round(mb)} MB` : 'n/a');

/**
 * benchCrl times N-entry CRLs (default 10k, 100k, 1M) against `openssl ca -gencrl`. Ratios are
 * openssl's wall time over ours (speed-up), and for the last row openssl's peak RSS over ours.
 */
export async function benchCrl(sizes = [10_000, 100_000, 1_000_000]): Promise<BenchRow[]> {
  if (!__filename.endsWith('.js')) throw new Error('bench/crl runs its children from compiled JavaScript: build with tsc first');
  if (!fs.existsSync(OPENSSL)) throw new Error(`${OPENSSL} not found`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-crl-'));
  const rows: BenchRow[] = [];
  try {
    await makeCa(dir);
    const self = [...process.execArgv, __filename, '--child'];
    let last: { ours: Run; openssl: Run } | undefined;
    for (const n of sizes) {
      const prefix = crypto.randomBytes(12);
      prefix[0] = 0x40 | (prefix[0] & 0x3f); // positive, always 16 octets
      const index = path.join(dir, 'index.txt');
      await writeIndex(index, prefix, n);
      fs.writeFileSync(path.join(dir, 'index.txt.attr'), 'unique_subject = no\n');
      // Round-robin, best of a few rounds for the small sizes: the machine is shared and noisy.
      const rounds = n >= 100_000 ? 2 : 3;
      let best: Record<'openssl' | 'index' | 'pages', Run | undefined> = { openssl: undefined, index: undefined, pages: undefined };
      for (let r = 0; r < rounds; r++) {
        fs.writeFileSync(path.join(dir, 'crlnumber'), '01\n');
        const o = timed(OPENSSL, ['ca', '-gencrl', '-config', 'openssl.cnf', '-out', 'openssl.crl'], dir);
        const i = timed(process.execPath, [...self, 'index', dir, path.join(dir, 'index.crl'), index], dir);
        const p = timed(process.execPath, [...self, 'pages', dir, path.join(dir, 'pages.crl'), String(n), prefix.toString('hex')], dir);
        const keep = (a: Run | undefined, b: Run): Run => (!a || b.seconds < a.seconds ? b : a);
        best = { openssl: keep(best.openssl, o), index: keep(best.index, i), pages: keep(best.pages, p) };
      }
      // verdicts: openssl accepts our CRLs, and our entries are openssl's entries, byte for byte
      const verify = (f: string): boolean => /verify OK/.test(spawnSync(OPENSSL, ['crl', '-inform', 'DER', '-in', f, '-CAfile', 'ca.pem', '-noout'], { cwd: dir, encoding: 'utf8' }).stderr + '');
      const theirs = pemBlocks(fs.readFileSync(path.join(dir, 'openssl.crl'), 'utf8'), 'X509 CRL')[0];
      const ours = fs.readFileSync(path.join(dir, 'index.crl'));
      const same = revokedList(theirs).equals(revokedList(ours)) && revokedList(ours).equals(revokedList(fs.readFileSync(path.join(dir, 'pages.crl'))));
      const okIndex = verify('index.crl');
      const okPages = verify('pages.crl');
      const o = best.openssl!;
      const note = `openssl crl -CAfile: ${okIndex && okPages ? 'verify OK' : 'VERIFY FAILED'}; entries ${same ? '=' : '!='} openssl's bytes; ${(ours.length / 1e6).toFixed(1)} MB DER vs openssl ${(theirs.length / 1e6).toFixed(1)} MB`;
      const fig = (r: Run): string => `${fmtS(r.seconds)} wall, ${fmtS(r.cpu)} CPU, ${fmtMb(r.rssMb)} peak RSS`;
      const cpuRatio = (r: Run): string => `CPU ${(o.cpu / r.cpu).toFixed(1)}x`;
      const baseline = `openssl ca -gencrl ${fig(o)}`;
      rows.push({
        name: `CRL ${n.toLocaleString('en-US')} entries: index.txt -> signed DER file`,
        figure: fig(best.index!),
        baseline,
        ratio: o.seconds / best.index!.seconds,
        note: `${cpuRatio(best.index!)}; ${note}`,
      });
      rows.push({
        // the service's own path (entries paged from the store); the 1,000,000 row is the one with a target
        ...(n === 1_000_000 ? { id: 'crl.1m' as const } : {}),
        name: `CRL ${n.toLocaleString('en-US')} entries: paged entries -> signed DER file`,
        figure: fig(best.pages!),
        baseline,
        ratio: o.seconds / best.pages!.seconds,
        note: cpuRatio(best.pages!),
      });
      if (!okIndex || !okPages || !same) throw new Error(`CRL ${n}: ${note}`);
      last = { ours: best.index!, openssl: o };
      fs.rmSync(index);
    }
    if (last && Number.isFinite(last.openssl.rssMb)) {
      rows.push({
        name: `CRL ${sizes[sizes.length - 1].toLocaleString('en-US')} entries: peak RSS (index.txt variant)`,
        figure: fmtMb(last.ours.rssMb),
        baseline: `openssl ${fmtMb(last.openssl.rssMb)}`,
        ratio: last.openssl.rssMb / last.ours.rssMb,
      });
    }
    return rows;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  if (process.argv[2] === '--child') {
    child(process.argv.slice(3)).catch((e: unknown) => {
      process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    });
  } else {
    const sizes = process.argv
      .slice(2)
      .map(Number)
      .filter((n) => n > 0);
    benchCrl(sizes.length ? sizes : undefined).then((r) => console.table(r));
  }
}
