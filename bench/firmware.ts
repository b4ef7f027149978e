import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CMS_OID } from '../src/cms/cms-algorithms';
import { envelopeToCertificates } from '../src/cms/enveloped-data';
import { encryptedDataContentInfo, newGroupKey, wrapGroupKeyTo } from '../src/cms/firmware-group-key';
import { buildFirmwareRelease, createFirmwarePackage, readFirmwarePackage, signFirmwarePackage } from '../src/cms/firmware-package';
import { assembleCertificate, encodeTbs, newSerial } from '../src/ca/certificate-encoder';
import { encodeName } from '../src/ca/name';
import { generateKeyPair, softwareSigningKey } from '../src/keys/software-key-backend';
import { buildGroupFirmwareRelease } from '../src/cms/firmware-group-release';
import { bufferSource } from '../src/cms/byte-source';
import { FirmwareGroupKeys } from '../src/ra/firmware-group-keys';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';
import { firmwareGroupKeyRecord, firmwareReleaseKey } from '../src/store/store';
import { BenchRow, fmtMicros, fmtRate } from './bench-table';
import { MemoryOperation, releaseFile } from './firmware-memory-child';

/**
 * benchFirmware: a 64 MiB image signed (one SignerInfo added to a package) and verified by device-ca,
 * beside `openssl cms -sign -binary -nodetach` and `openssl cms -verify -noverify` on the same file with
 * the same P-256 key in the same run (openssl's time includes its process start and file I/O, device-ca's
 * does not read or write files); and one release encrypted to N device certificates (P-256, one shared
 * ephemeral key) beside raw ECDH operations. Best of 3 rounds each. Target: not slower than openssl.
 */
const IMAGE_MIB = 64;
const RECIPIENTS = 10_000;

function best(rounds: number, f: () => unknown): number {
  let s = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = process.hrtime.bigint();
    f();
    s = Math.min(s, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return s;
}
async function bestAsync(rounds: number, f: () => Promise<unknown>): Promise<number> {
  let s = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = process.hrtime.bigint();
    await f();
    s = Math.min(s, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return s;
}
/** peakRss runs one operation in a fresh process (firmware-memory-child.ts) and returns its peak RSS in MiB. */
function peakRss(op: MemoryOperation, dir: string): number {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'firmware-memory-child.js'), op, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`firmware-memory-child ${op}: ${r.stderr.toString()}`);
  return Number(r.stdout.toString().trim()) / 1024;
}
function memoryRows(dir: string, ops: { op: MemoryOperation; what: string }[]): BenchRow[] {
  const floor = peakRss('baseline', dir);
  return ops.map(({ op, what }) => {
    const peak = peakRss(op, dir);
    return {
      name: `peak RSS: ${what} of a ${IMAGE_MIB} MiB image (fresh process, files in and out; node alone ${floor.toFixed(0)} MiB)`,
      figure: `${peak.toFixed(0)} MiB`,
      baseline: `${IMAGE_MIB} MiB image`,
      ratio: peak / IMAGE_MIB,
      note: 'ratio = peak / image size (target well under 2)',
    };
  });
}
function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr.toString()}`);
}

/**
 * releasesToVerify writes what the release-verify memory operations read: a firmware chain made by openssl
 * (root, signer CA, one party of role manufacturer), a device key and certificate, and the image released
 * plain and encrypted to the device and `others` (made here, in memory: only the verifying is measured).
 */
export async function releasesToVerify(dir: string, image: Buffer, others: Buffer[]): Promise<void> {
  const f = (name: string): string => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  fs.writeFileSync(f('ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  fs.writeFileSync(f('leaf.ext'), 'basicConstraints=CA:FALSE\n');
  openssl(['req', '-x509', ...ec, '-keyout', f('root.key'), '-out', f('root.crt'), '-subj', '/CN=bench root', '-days', '2']);
  const issue = (name: string, subj: string, ca: string, ext: string): void => {
    openssl(['req', '-new', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', subj]);
    openssl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.crt`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '2', '-extfile', f(ext), '-out', f(`${name}.crt`)]);
  };
  issue('signer-ca', '/CN=bench signer CA', 'root', 'ca.ext');
  issue('party', '/OU=manufacturer/CN=bench party', 'signer-ca', 'leaf.ext');
  issue('device', '/CN=bench device', 'root', 'leaf.ext');
  fs.writeFileSync(f('chain.pem'), fs.readFileSync(f('signer-ca.crt'), 'latin1') + fs.readFileSync(f('root.crt'), 'latin1'));
  const der = (name: string): Buffer => Buffer.from(new crypto.X509Certificate(fs.readFileSync(f(`${name}.crt`))).raw);
  const signerOf = (name: string) => ({ certificate: der(name), key: softwareSigningKey(crypto.createPrivateKey(fs.readFileSync(f(`${name}.key`))), 'ecdsa-p256', f(`${name}.key`)) });
  const now = new Date();
  const pkg = readFirmwarePackage(await signFirmwarePackage(createFirmwarePackage(image, { name: 'bench', version: 1, hardware: [] }), signerOf('party'), now));
  const ca = { ...signerOf('signer-ca'), chain: [der('root')] };
  fs.writeFileSync(f('verify-plain.der'), await buildFirmwareRelease(pkg, ca, { now }));
  fs.writeFileSync(f('verify-enc.der'), await buildFirmwareRelease(pkg, ca, { now, recipients: [der('device'), ...others] }));
  const groupKey = newGroupKey();
  fs.writeFileSync(f('group-key.json'), JSON.stringify({ id: groupKey.id, key: groupKey.key.toString('hex') }));
  fs.writeFileSync(f('verify-group.der'), await buildGroupFirmwareRelease(pkg, ca, { groupKey, now }));
}

/**
 * groupKeyFetchRows: `GET /firmware/keys/<id>` decided by FirmwareGroupKeys.fetch on a SQLite store, for a
 * key given to `members.length` devices: with the members in their own table (this version) and, in the
 * same run, with the record of the previous version (the same key, its members listed inside the record,
 * which every fetch read and parsed). A fetch by a member (record, membership, the device's owner, the
 * key wrapped to its certificate, the audit record) and one by a device that is not a member (refused
 * after the record and the membership: the store's part alone).
 */
async function groupKeyFetchRows(dir: string, members: string[], certs: Buffer[]): Promise<BenchRow[]> {
  const store = new SqliteStore(path.join(dir, 'group-keys.sqlite'));
  try {
    const at = new Date();
    const enrol = async (id: string, der: Buffer): Promise<crypto.X509Certificate> => {
      const x = new crypto.X509Certificate(der);
      await store.createDevice(
        { id, owner: null, label: null, state: 'registered' },
        { hash: 'h', expiresAt: new Date(at.getTime() + 86400_000) },
        { type: 'bench', actor: 'bench', subject: id, data: {} },
      );
      await store.recordIssuance({
        cert: {
          serial: x.serialNumber.toLowerCase().padStart(32, '0'),
          deviceId: id,
          issuer: 'bench',
          subject: `CN=${id}`,
          profile: 'default',
          notBefore: new Date(x.validFrom),
          notAfter: new Date(x.validTo),
          shard: 0,
          spkiSha256: '00',
          der,
        },
        audit: { type: 'bench', actor: 'bench', subject: id, data: {} },
      });
      return x;
    };
    const member = await enrol(members[0], certs[0]);
    const outsider = await enrol('outsider', certs[1]);
    const kek = crypto.randomBytes(32);
    const keys = new FirmwareGroupKeys(store, () => kek);
    const { key } = await keys.keyForRelease('fleet', members, 'bench');
    const FETCHES = 200;
    const rate = async (who: crypto.X509Certificate): Promise<number> =>
      FETCHES /
      (await bestAsync(3, async () => {
        for (let i = 0; i < FETCHES; i++) await keys.fetch({ keyId: key.id, requester: { clientCertificate: who } }).catch(() => undefined);
      }));
    const name = firmwareGroupKeyRecord(key.id);
    const record = (await store.getCaState(name))!;
    const newBytes = JSON.stringify(record.value).length;
    const [served, refused] = [await rate(member), await rate(outsider)];
    const previous = { ...(record.value as object), members: [...members].sort() };
    await store.saveCaState(name, previous, record.version);
    const oldBytes = JSON.stringify(previous).length;
    const [servedOld, refusedOld] = [await rate(member), await rate(outsider)];
    const shape = `${members.length} members: member table vs the previous record (members inside, ${(oldBytes / 1024).toFixed(0)} KB; now ${newBytes} B)`;
    return [
      {
        name: `group key fetch by a member at ${shape}`,
        figure: fmtRate(served, 'fetches'),
        baseline: fmtRate(servedOld, 'fetches'),
        ratio: served / servedOld,
        note: 'FirmwareGroupKeys.fetch on SQLite: record, membership, owner, key wrapped to the certificate (one ECDH), audit',
      },
      {
        name: `group key fetch refused (not a member) at ${shape}`,
        figure: fmtRate(refused, 'fetches'),
        baseline: fmtRate(refusedOld, 'fetches'),
        ratio: refused / refusedOld,
        note: "the store's part alone: the certificate, the device, the key record and the membership",
      },
    ];
  } finally {
    await store.close();
  }
}

export async function benchFirmware(): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-fw-'));
  try {
    const imageFile = path.join(dir, 'image.bin');
    const keyFile = path.join(dir, 'signer.key');
    const certFile = path.join(dir, 'signer.crt');
    const image = crypto.randomBytes(IMAGE_MIB << 20);
    fs.writeFileSync(imageFile, image);
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', '/CN=bench signer', '-days', '2']);
    const signer = {
      certificate: Buffer.from(new crypto.X509Certificate(fs.readFileSync(certFile)).raw),
      key: softwareSigningKey(crypto.createPrivateKey(fs.readFileSync(keyFile)), 'ecdsa-p256', keyFile),
    };
    const unsigned = createFirmwarePackage(image, { name: 'bench', version: 1, hardware: [] });
    let signed: Buffer = Buffer.alloc(0);
    const now = new Date();
    // a fresh Buffer each round: the digest memo is per Buffer, so nothing is hashed in advance
    const ourSign = await bestAsync(3, async () => (signed = await signFirmwarePackage(Buffer.from(unsigned), signer, now)));
    const ourVerify = best(3, () => readFirmwarePackage(Buffer.from(signed)));
    const out = path.join(dir, 'signed.der');
    const theirSign = best(3, () => openssl(['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', '-in', imageFile, '-signer', certFile, '-inkey', keyFile, '-md', 'sha256', '-out', out]));
    const theirVerify = best(3, () => openssl(['cms', '-verify', '-binary', '-noverify', '-inform', 'DER', '-in', out, '-out', '/dev/null']));
    const mibps = (s: number): number => IMAGE_MIB / s;
    // firmware release as the RA writes it (without its store), file to file: the package verified (one
    // pass), the image copied or encrypted into the release (a second pass), the CA's counter-signature
    const signedFile = path.join(dir, 'signed-t.der');
    fs.writeFileSync(signedFile, signed);
    const releaseOut = path.join(dir, 'release-t.der');
    const ourReleasePlain = await bestAsync(3, () => releaseFile(signedFile, releaseOut, signer, { now }));

    // recipients: device certificates made in process (one issuer key, P-256 subjects)
    const issuer = generateKeyPair('ecdsa-p256').privateKey;
    const issuerKey = softwareSigningKey(issuer, 'ecdsa-p256', 'bench-issuer');
    const issuerName = encodeName([{ type: 'CN', value: 'bench issuing' }]);
    const certs: Buffer[] = [];
    const devicePublics: crypto.KeyObject[] = [];
    for (let i = 0; i < RECIPIENTS; i++) {
      const pub = crypto.createPublicKey(generateKeyPair('ecdsa-p256').privateKey);
      devicePublics.push(pub);
      const tbs = encodeTbs({
        serial: newSerial(),
        signatureAlgorithm: issuerKey.signatureAlgorithm,
        issuer: issuerName,
        notBefore: now,
        notAfter: new Date(now.getTime() + 86400_000),
        subject: encodeName([{ type: 'CN', value: `dev-${i}` }]),
        spki: pub.export({ type: 'spki', format: 'der' }),
        extensions: [],
      });
      certs.push(assembleCertificate(tbs, issuerKey.signatureAlgorithm, await issuerKey.sign(tbs)));
    }
    const ourReleaseEnc = await bestAsync(3, () => releaseFile(signedFile, releaseOut, signer, { now, recipients: certs.slice(0, 1) }));
    // openssl doing the same work: encrypt the image to the device (AES-256-CBC, ECDH), then sign the result
    const devicePem = path.join(dir, 'device-0.pem');
    fs.writeFileSync(devicePem, new crypto.X509Certificate(certs[0]).toString());
    const encrypted = path.join(dir, 'openssl-enc.der');
    const theirEncSign = best(3, () => {
      openssl(['cms', '-encrypt', '-binary', '-aes256', '-outform', 'DER', '-in', imageFile, '-recip', devicePem, '-out', encrypted]);
      openssl(['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', '-in', encrypted, '-signer', certFile, '-inkey', keyFile, '-md', 'sha256', '-out', out]);
    });
    const small = crypto.randomBytes(64 << 10);
    const envelope = best(3, () => envelopeToCertificates(small, CMS_OID.firmwarePackage, certs));
    const ecdh = crypto.createECDH('prime256v1');
    ecdh.generateKeys();
    const points = devicePublics.map((k) => {
      const j = k.export({ format: 'jwk' });
      return Buffer.concat([Buffer.from([4]), Buffer.from(j.x!, 'base64url'), Buffer.from(j.y!, 'base64url')]);
    });
    const raw = best(3, () => points.forEach((p) => ecdh.computeSecret(p)));
    // the same release to a group key (docs/firmware.md "Group key"): one EncryptedData, whatever the fleet;
    // each device's cost moves to its fetch, one key package wrapped to its certificate
    const perDeviceSize = envelopeToCertificates(small, CMS_OID.firmwarePackage, certs).length;
    const groupKey = newGroupKey();
    const group = best(3, () => encryptedDataContentInfo(small, CMS_OID.firmwarePackage, groupKey.key));
    const groupSize = encryptedDataContentInfo(small, CMS_OID.firmwarePackage, groupKey.key).length;
    const wraps = best(3, () => certs.slice(0, 1000).forEach((c) => wrapGroupKeyTo(c, groupKey)));
    const fetchRows = await groupKeyFetchRows(
      dir,
      certs.map((_, i) => `dev-${String(i).padStart(5, '0')}`),
      certs,
    );

    // memory: each operation in its own process; the encrypted release goes to the first 100 devices
    fs.writeFileSync(
      path.join(dir, 'recipients.der'),
      Buffer.concat(
        certs.slice(0, 100).flatMap((c) => {
          const n = Buffer.alloc(4);
          n.writeUInt32BE(c.length);
          return [n, c];
        }),
      ),
    );
    await releasesToVerify(dir, image, certs.slice(0, 99));
    const memory = memoryRows(dir, [
      { op: 'create', what: 'firmware create, in memory (createFirmwarePackage)' },
      { op: 'create-streamed', what: 'firmware create, streamed (the CLI)' },
      { op: 'sign', what: 'firmware sign, in memory (signFirmwarePackage)' },
      { op: 'sign-streamed', what: 'firmware sign, streamed (the CLI)' },
      { op: 'verify', what: 'package verify, in memory (readFirmwarePackage)' },
      { op: 'verify-streamed', what: 'package verify, streamed (readFirmwarePackageFile)' },
      { op: 'release-plain', what: 'release plain, in memory (buildFirmwareRelease)' },
      { op: 'release-plain-streamed', what: 'release plain, streamed (buildPlainReleaseFile)' },
      { op: 'release-encrypted', what: 'release encrypted to 100 devices, in memory (buildFirmwareRelease)' },
      { op: 'release-encrypted-one', what: 'release encrypted to 1 device, in memory (buildFirmwareRelease, the release before it was streamed)' },
      { op: 'release-file-plain', what: 'firmware release plain, streamed file to file (writeFirmwareReleaseFile, the RA without its store)' },
      { op: 'release-file-encrypted-one', what: 'firmware release encrypted to 1 device, streamed file to file (writeFirmwareReleaseFile)' },
      { op: 'release-verify-plain', what: 'firmware verify of a plain release, in memory (verifyFirmwareRelease)' },
      { op: 'release-verify-plain-streamed', what: 'firmware verify of a plain release, streamed (verifyFirmwareReleaseFile, the CLI and agent)' },
      { op: 'release-verify-encrypted', what: 'firmware verify + decrypt of a release to 100 devices, in memory (verifyFirmwareRelease)' },
      { op: 'release-verify-encrypted-streamed', what: 'firmware verify + decrypt of a release to 100 devices, streamed (verifyFirmwareReleaseFile)' },
      { op: 'release-verify-group-previous', what: 'firmware verify --key-package of a group release as the previous version did (EncryptedData read whole, openEncryptedData)' },
      { op: 'release-verify-group-streamed', what: 'firmware verify --key-package of a group release, streamed (verifyFirmwareReleaseFile, the CLI and agent)' },
    ]);

    return [
      {
        name: `firmware sign ${IMAGE_MIB} MiB (add one P-256 SignerInfo) vs openssl cms -sign`,
        figure: fmtRate(mibps(ourSign), 'MiB'),
        baseline: fmtRate(mibps(theirSign), 'MiB'),
        ratio: theirSign / ourSign,
      },
      {
        name: `firmware verify ${IMAGE_MIB} MiB (every SignerInfo) vs openssl cms -verify -noverify`,
        figure: fmtRate(mibps(ourVerify), 'MiB'),
        baseline: fmtRate(mibps(theirVerify), 'MiB'),
        ratio: theirVerify / ourVerify,
      },
      {
        name: `firmware release ${IMAGE_MIB} MiB plain, streamed file to file (verify the package, copy, counter-sign) vs openssl cms -sign`,
        figure: fmtRate(mibps(ourReleasePlain), 'MiB'),
        baseline: fmtRate(mibps(theirSign), 'MiB'),
        ratio: theirSign / ourReleasePlain,
      },
      {
        name: `firmware release ${IMAGE_MIB} MiB encrypted to 1 P-256 device, streamed file to file (verify, AES-256-CBC, counter-sign) vs openssl cms -encrypt then -sign`,
        figure: fmtRate(mibps(ourReleaseEnc), 'MiB'),
        baseline: fmtRate(mibps(theirEncSign), 'MiB'),
        ratio: theirEncSign / ourReleaseEnc,
        note: `openssl cms -sign alone: ${fmtRate(mibps(theirSign), 'MiB')}`,
      },
      {
        name: `encrypt a release to ${RECIPIENTS} P-256 devices (ECDH + KDF + AES wrap) vs raw ECDH`,
        figure: fmtRate(RECIPIENTS / envelope, 'recipients'),
        baseline: fmtRate(RECIPIENTS / raw, 'ECDH'),
        ratio: raw / envelope,
      },
      {
        name: `encrypt a 64 KiB release to a group of ${RECIPIENTS} P-256 devices (one EncryptedData) vs to each device: time, bytes`,
        figure: `${fmtMicros(group * 1e6)}, ${groupSize} B`,
        baseline: `${fmtMicros(envelope * 1e6)}, ${perDeviceSize} B`,
        ratio: envelope / group,
        note: `release size ${(perDeviceSize / groupSize).toFixed(1)}x smaller`,
      },
      {
        name: 'wrap the group key to one device certificate (GET /firmware/keys/<id>, the CMS part) vs raw ECDH',
        figure: fmtRate(1000 / wraps, 'key packages'),
        baseline: fmtRate(RECIPIENTS / raw, 'ECDH'),
        ratio: raw / RECIPIENTS / (wraps / 1000),
      },
      ...fetchRows,
      ...memory,
      ...(await servingRows(dir, image)),
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * servingRows: the peak RSS of a process serving GET /firmware/<name>/<version> of a 64 MiB release to
 * curl (bench/firmware-serve-child.ts), the release stored in 1 MiB chunks beside the same bytes stored
 * as one value, as device-ca stored releases before (that row is read whole, as then), in the same run;
 * and the process's peak when it served nothing.
 */
export async function servingRows(dir: string, image: Buffer): Promise<BenchRow[]> {
  const file = path.join(dir, 'serve.sqlite');
  const store = new SqliteStore(file);
  const info = { name: 'big', sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date() };
  await store.saveFirmwareRelease({ ...info, version: 2 }, bufferSource(image), { type: 'firmware.released', actor: 'bench', subject: 'firmware:big', data: {} });
  await store.close();
  const db = new Database(file);
  db.prepare(`INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, released_at, der) VALUES (?, 'big', 1, ?, '[]', NULL, 0, ?)`).run(
    firmwareReleaseKey('big', 1),
    info.sha256,
    image,
  );
  db.close();
  const serve = async (version: number | null): Promise<{ peakMiB: number; seconds: number }> => {
    const child = spawn(process.execPath, [path.join(__dirname, 'firmware-serve-child.js'), file], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = (async function* () {
      let buf = '';
      for await (const d of child.stdout) {
        buf += String(d);
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          yield buf.slice(0, i);
          buf = buf.slice(i + 1);
        }
      }
    })();
    const port = Number((await lines.next()).value);
    const t = process.hrtime.bigint();
    if (version !== null) {
      const r = await new Promise<{ code: number | null; out: string }>((res) => {
        const c = spawn('curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', `http://127.0.0.1:${port}/firmware/big/${version}`]);
        let out = '';
        c.stdout.on('data', (d) => (out += String(d)));
        c.on('exit', (code) => res({ code, out }));
      });
      if (r.code !== 0 || Number(r.out) !== image.length) throw new Error(`curl of release ${version}: exit ${r.code}, ${r.out} bytes`);
    }
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    child.stdin.write('rss\n');
    const kib = Number((await lines.next()).value);
    await new Promise((res) => child.once('exit', res));
    return { peakMiB: kib / 1024, seconds };
  };
  const idle = await serve(null);
  const whole = await serve(1);
  const chunked = await serve(2);
  const mib = image.length / (1 << 20);
  return [
    {
      name: `peak RSS of a process serving a ${IMAGE_MIB} MiB release (GET /firmware, curl): stored in 1 MiB chunks vs one value (as before); idle ${idle.peakMiB.toFixed(0)} MiB`,
      figure: `${chunked.peakMiB.toFixed(0)} MiB (${(mib / chunked.seconds).toFixed(0)} MiB/s)`,
      baseline: `${whole.peakMiB.toFixed(0)} MiB (${(mib / whole.seconds).toFixed(0)} MiB/s)`,
      ratio: whole.peakMiB / chunked.peakMiB,
      note: 'ratio = one value / chunks (higher is better)',
    },
  ];
}
