import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import realFs from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exportHashedDir } from '../../../src/ca/crl-export';
import { CrlPublisher } from '../../../src/ca/crl-publisher';
import { toPem } from '../../../src/ca/pem';
import { readRootCrl } from '../../../src/ca/root-crl';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * exportHashedDir judged by `openssl verify -CApath`, run the way FreeRADIUS 3.2 verifies a device with
 * check_crl and check_all_crl: X509_V_FLAG_PARTIAL_CHAIN set (FreeRADIUS always sets it), so the chain stops
 * at the first CA found in the directory.
 */

let t: TestCa;
let store: SqliteStore;
let publisher: CrlPublisher;
let leaf: string;
let issuingPem: string;
beforeAll(async () => {
  t = await makeTestCa({}, 'device-ca-crl-export-');
  store = new SqliteStore(t.cfg.store.path);
  publisher = new CrlPublisher(t.hierarchy.issuing, store, t.cfg.crl, 'http://ca.example.test:8080');
  const issued = await t.ca.issue({
    profile: 'default',
    subject: [{ type: 'CN', value: 'dev-1' }],
    spki: crypto.createPublicKey(generateKeyPair('ecdsa-p256').privateKey).export({ type: 'spki', format: 'der' }),
    keyType: 'ec',
    sans: [],
  });
  leaf = path.join(t.dir, 'leaf.pem');
  issuingPem = path.join(t.dir, 'issuing.pem');
  fs.writeFileSync(leaf, toPem(issued.der, 'CERTIFICATE'));
  fs.writeFileSync(issuingPem, toPem(t.hierarchy.issuing.der, 'CERTIFICATE'));
});
afterAll(async () => {
  await store?.close();
  t?.cleanup();
});

/** freeradiusVerdict: what FreeRADIUS's OpenSSL says of the device, untrusted = the chain the device sent */
function freeradiusVerdict(dir: string, sent: string[]): string {
  const r = spawnSync('openssl', ['verify', '-partial_chain', '-crl_check_all', '-CApath', dir, ...sent.flatMap((f) => ['-untrusted', f]), leaf], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`;
}

const caFiles = (dir: string) => fs.readdirSync(dir).filter((f) => /^[0-9a-f]{8}\.\d+$/.test(f));

it('the default directory (issuing CA as an anchor): the partial chain ends at the issuing CA and check_all_crl cannot check it', async () => {
  const dir = path.join(t.dir, 'default');
  const root = await readRootCrl(store, t.hierarchy.root.der);
  await exportHashedDir(dir, [t.hierarchy.issuing.der, t.hierarchy.root.der], publisher, root);
  expect(caFiles(dir)).toHaveLength(2);
  expect(freeradiusVerdict(dir, [])).toMatch(/error 3 at 1 depth lookup: unable to get certificate CRL/);
});

it('--root-only: the root is the only anchor; a device sending its chain verifies, and a directory exported before loses the issuing CA', async () => {
  const dir = path.join(t.dir, 'root-only');
  const root = await readRootCrl(store, t.hierarchy.root.der);
  await exportHashedDir(dir, [t.hierarchy.issuing.der, t.hierarchy.root.der], publisher, root);
  const numbers = await exportHashedDir(dir, [t.hierarchy.issuing.der, t.hierarchy.root.der], publisher, root, { rootOnly: true });
  expect(numbers.get(-1)).toBe(root!.number);
  const anchors = caFiles(dir);
  expect(anchors).toHaveLength(1);
  expect(fs.readFileSync(path.join(dir, anchors[0]), 'utf8')).toBe(toPem(t.hierarchy.root.der, 'CERTIFICATE'));
  expect(freeradiusVerdict(dir, [issuingPem])).toBe(`${leaf}: OK\n`);
  // without its chain the device cannot be verified at all: the issuing CA is no longer in the directory
  expect(freeradiusVerdict(dir, [])).toMatch(/unable to get local issuer certificate/);
});

it('a CRL shard file removed (fewer shards than before) stays removed after a power loss: the directory is fsynced after the unlink', async () => {
  const dir = path.join(t.dir, 'fewer-shards');
  const root = await readRootCrl(store, t.hierarchy.root.der);
  await exportHashedDir(dir, [t.hierarchy.issuing.der, t.hierarchy.root.der], publisher, root);
  const shard0 = fs.readdirSync(dir).find((f) => /^[0-9a-f]{8}\.r0$/.test(f) && fs.readFileSync(path.join(dir, f), 'utf8') !== toPem(root!.der, 'X509 CRL'))!;
  const stale = shard0.replace(/\.r0$/, `.r${publisher.shards + 3}`);
  fs.copyFileSync(path.join(dir, shard0), path.join(dir, stale)); // a shard of an export with more shards
  const events: string[] = [];
  const open = realFs.openSync;
  const fsync = realFs.fsyncSync;
  const unlink = realFs.unlinkSync;
  const dirFds = new Set<number>();
  jest.spyOn(realFs, 'openSync').mockImplementation((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (open as (...a: unknown[]) => number)(p, ...rest);
    if (path.resolve(String(p)) === dir) dirFds.add(fd);
    return fd;
  });
  jest.spyOn(realFs, 'fsyncSync').mockImplementation((fd: number) => {
    fsync(fd);
    if (dirFds.has(fd)) events.push('fsync dir');
  });
  jest.spyOn(realFs, 'unlinkSync').mockImplementation((p: fs.PathLike) => {
    unlink(p);
    events.push(`unlink ${path.basename(String(p))}`);
  });
  try {
    await exportHashedDir(dir, [t.hierarchy.issuing.der, t.hierarchy.root.der], publisher, root);
  } finally {
    jest.restoreAllMocks();
  }
  expect(fs.existsSync(path.join(dir, stale))).toBe(false);
  expect(events.slice(events.indexOf(`unlink ${stale}`))).toContain('fsync dir');
});
