import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsyncDirectory, writeFileAtomic } from '../data-dir/atomic-file';
import { toPem } from './pem';
import { certificateParts } from './certificate-parts';
import { CrlPublisher } from './crl-publisher';
import { crlToPem } from './crl-encoder';
import { opensslNameHash } from './openssl-name-hash';
import { RootCrlInfo } from './root-crl';

/**
 * exportHashedDir writes CA certificates as <hash>.N and the current CRLs as <hash>.rN (PEM), the
 * OpenSSL hashed-directory layout that FreeRADIUS `ca_path` and `openssl verify -CApath` read. Files are
 * replaced atomically; .rN files beyond the shard count are removed. caCerts[0] is the issuing CA.
 * rootCrl, when given, is written as <root hash>.r0 (caCerts[last] is the root): with it, relying parties
 * that check every CRL in the chain (FreeRADIUS check_all_crl) accept devices. Returns the CRL numbers
 * written: the issuing CA's shards, and the root CRL under key -1.
 *
 * o.rootOnly leaves the issuing CA certificate out (and removes one an earlier export wrote), so the root
 * is the only trust anchor. FreeRADIUS 3.2 sets X509_V_FLAG_PARTIAL_CHAIN: with the issuing CA in ca_path
 * the chain stops there, the root CRL's signer is outside it, and check_all_crl rejects every device
 * ("unable to get certificate CRL" at depth 1). Devices then send their chain (leaf and issuing CA).
 */
export async function exportHashedDir(
  dir: string,
  caCerts: Buffer[],
  publisher: CrlPublisher,
  rootCrl?: Pick<RootCrlInfo, 'der' | 'number'> | null,
  o: { rootOnly?: boolean } = {},
): Promise<Map<number, bigint>> {
  fs.mkdirSync(dir, { recursive: true });
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileAtomic(f, text, 0o644); // fsynced, renamed, directory fsynced: the CRL number recorded is the one on disk
  };
  const byHash = new Map<string, number>();
  const issuerHash = opensslNameHash(certificateParts(caCerts[0]).subject);
  const anchors = o.rootOnly ? caCerts.slice(-1) : caCerts;
  if (o.rootOnly) {
    const rootHash = opensslNameHash(certificateParts(caCerts[caCerts.length - 1]).subject);
    for (const f of fs.readdirSync(dir)) if (issuerHash !== rootHash && new RegExp(`^${issuerHash}\\.\\d+$`).test(f)) fs.unlinkSync(path.join(dir, f));
  }
  for (const der of anchors) {
    const h = opensslNameHash(certificateParts(der).subject);
    const n = byHash.get(h) ?? 0;
    byHash.set(h, n + 1);
    write(`${h}.${n}`, toPem(der, 'CERTIFICATE'));
  }
  const numbers = new Map<number, bigint>();
  for (let s = 0; s < publisher.shards; s++) {
    const crl = await publisher.current(s);
    write(`${issuerHash}.r${s}`, crlToPem(crl.der));
    numbers.set(s, crl.number);
  }
  if (rootCrl) {
    const rootHash = opensslNameHash(certificateParts(caCerts[caCerts.length - 1]).subject);
    write(`${rootHash}.r0`, crlToPem(rootCrl.der));
    numbers.set(-1, rootCrl.number);
  }
  let removed = false;
  for (const f of fs.readdirSync(dir)) {
    const m = new RegExp(`^${issuerHash}\\.r(\\d+)$`).exec(f);
    if (m && Number(m[1]) >= publisher.shards) {
      fs.unlinkSync(path.join(dir, f));
      removed = true;
    }
  }
  // an unlink is a change of the directory too: without this a power loss could bring back an old shard's CRL
  if (removed) fsyncDirectory(dir);
  return numbers;
}

/**
 * exportRootToHashedDir writes a root certificate (<hash>.0) and its CRL (<hash>.r0) into the hashed
 * directory: after `ca rollover-root` both roots are anchors there, each with its own CRL. Returns the
 * CRL number written (null when the store holds no CRL of that root).
 */
export function exportRootToHashedDir(dir: string, rootDer: Buffer, rootCrl: Pick<RootCrlInfo, 'der' | 'number'> | null): bigint | null {
  fs.mkdirSync(dir, { recursive: true });
  const h = opensslNameHash(certificateParts(rootDer).subject);
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileAtomic(f, text, 0o644); // fsynced, renamed, directory fsynced: the CRL number recorded is the one on disk
  };
  write(`${h}.0`, toPem(rootDer, 'CERTIFICATE'));
  if (!rootCrl) return null;
  write(`${h}.r0`, crlToPem(rootCrl.der));
  return rootCrl.number;
}

/** runReload runs the operator's reload command through the shell; resolves with its exit code. */
export function runReload(cmd: string): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn('/bin/sh', ['-c', cmd], { stdio: 'inherit' });
    p.on('exit', (code) => resolve(code ?? 1));
    p.on('error', () => resolve(127));
  });
}
