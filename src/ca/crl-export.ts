import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
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
 */
export async function exportHashedDir(dir: string, caCerts: Buffer[], publisher: CrlPublisher, rootCrl?: Pick<RootCrlInfo, 'der' | 'number'> | null): Promise<Map<number, bigint>> {
  fs.mkdirSync(dir, { recursive: true });
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f + '.tmp', text);
    fs.renameSync(f + '.tmp', f);
  };
  const byHash = new Map<string, number>();
  for (const der of caCerts) {
    const h = opensslNameHash(certificateParts(der).subject);
    const n = byHash.get(h) ?? 0;
    byHash.set(h, n + 1);
    write(`${h}.${n}`, toPem(der, 'CERTIFICATE'));
  }
  const numbers = new Map<number, bigint>();
  const issuerHash = opensslNameHash(certificateParts(caCerts[0]).subject);
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
  for (const f of fs.readdirSync(dir)) {
    const m = new RegExp(`^${issuerHash}\\.r(\\d+)$`).exec(f);
    if (m && Number(m[1]) >= publisher.shards) fs.unlinkSync(path.join(dir, f));
  }
  return numbers;
}

/** runReload runs the operator's reload command through the shell; resolves with its exit code. */
export function runReload(cmd: string): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn('/bin/sh', ['-c', cmd], { stdio: 'inherit' });
    p.on('exit', (code) => resolve(code ?? 1));
    p.on('error', () => resolve(127));
  });
}
