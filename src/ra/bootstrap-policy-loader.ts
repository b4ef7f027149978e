import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pemBlocks } from '../ca/pem';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { BootstrapPolicy } from './bootstrap-identity';

/** loadBootstrapPolicy reads the configured manufacturer trust anchors (PEM files or directories of them). */
export function loadBootstrapPolicy(cfg: Config): BootstrapPolicy {
  const anchors: crypto.X509Certificate[] = [];
  for (const p of cfg.bootstrap.trustAnchors) {
    let files: string[];
    try {
      files = fs.statSync(p).isDirectory()
        ? fs
            .readdirSync(p)
            .filter((f) => /\.(pem|crt)$/.test(f))
            .map((f) => path.join(p, f))
        : [p];
    } catch {
      throw new DeviceCaError('config', `bootstrap.trustAnchors: cannot read ${p}`);
    }
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      const ders = pemBlocks(text);
      if (!ders.length) throw new DeviceCaError('config', `bootstrap.trustAnchors: no PEM certificate in ${f}`);
      anchors.push(...ders.map((d) => new crypto.X509Certificate(d)));
    }
  }
  let pattern: RegExp | undefined;
  if (cfg.bootstrap.deviceIdPattern) {
    try {
      pattern = new RegExp(cfg.bootstrap.deviceIdPattern);
    } catch {
      throw new DeviceCaError('config', 'bootstrap.deviceIdPattern: not a valid regular expression');
    }
  }
  return { anchors, deviceIdFrom: cfg.bootstrap.deviceIdFrom, deviceIdPattern: pattern };
}
