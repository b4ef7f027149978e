import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** CmsParty: an RSA or EC key and its self-signed certificate, as files for openssl and as objects for the tests. */
export interface CmsParty {
  dir: string;
  keyFile: string;
  certFile: string;
  key: crypto.KeyObject;
  certDer: Buffer;
}

/** openssl runs the real openssl; a failure throws with its stderr, so a test sees the peer's verdict. */
export function openssl(args: string[], input?: Buffer): Buffer {
  const r = spawnSync('openssl', args, { input, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** opensslStatus runs openssl and returns its exit status and stderr, for the refusals a test expects. */
export function opensslStatus(args: string[], input?: Buffer): { status: number | null; stderr: string } {
  const r = spawnSync('openssl', args, { input, maxBuffer: 1 << 28 });
  return { status: r.status, stderr: r.stderr.toString() };
}

export function makeParty(cn: string, bits: number | 'P-256' | 'P-384' = 2048): CmsParty {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-cms-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  const newkey = typeof bits === 'number' ? ['-newkey', `rsa:${bits}`] : ['-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${bits}`];
  openssl(['req', '-x509', ...newkey, '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', `/CN=${cn}`, '-days', '2']);
  const key = crypto.createPrivateKey(fs.readFileSync(keyFile));
  const certDer = Buffer.from(new crypto.X509Certificate(fs.readFileSync(certFile)).raw);
  return { dir, keyFile, certFile, key, certDer };
}

export function removeParty(p: CmsParty): void {
  fs.rmSync(p.dir, { recursive: true, force: true });
}
