import * as fs from 'node:fs';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { fingerprintOfPem } from './admin-access';

/** operatorFingerprints reads admin.clientCerts: the operators' client certificates, as SHA-256 fingerprints. */
export function operatorFingerprints(cfg: Config): string[] {
  return cfg.admin.clientCerts.map((f) => {
    try {
      return fingerprintOfPem(fs.readFileSync(f, 'utf8'));
    } catch {
      throw new DeviceCaError('config', `admin.clientCerts: cannot read a PEM certificate from ${f}`);
    }
  });
}
