import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pemBlocks } from '../ca/pem';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';

/**
 * loadTpmRoots reads attestation.ekRoots: PEM files, or directories of .pem/.crt files, of TPM
 * manufacturer CAs. A directory that does not exist is skipped, so the default certs/tpm-roots works
 * before a deployer creates it; a file that is there but holds no certificate is a config error.
 */
export function loadTpmRoots(cfg: Pick<Config, 'attestation'>): crypto.X509Certificate[] {
  const roots: crypto.X509Certificate[] = [];
  for (const p of cfg.attestation.ekRoots) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(p);
    } catch {
      continue;
    }
    const files = stat.isDirectory()
      ? fs
          .readdirSync(p)
          .filter((f) => /\.(pem|crt)$/.test(f))
          .sort()
          .map((f) => path.join(p, f))
      : [p];
    for (const f of files) {
      let ders: Buffer[];
      try {
        ders = pemBlocks(fs.readFileSync(f, 'utf8'));
        roots.push(...ders.map((d) => new crypto.X509Certificate(d)));
      } catch {
        throw new DeviceCaError('config', `attestation.ekRoots: cannot read a certificate from ${f}`);
      }
      if (!ders.length) throw new DeviceCaError('config', `attestation.ekRoots: no PEM certificate in ${f}`);
    }
  }
  return roots;
}
