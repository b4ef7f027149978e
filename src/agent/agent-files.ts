import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toPem } from '../ca/pem';
import { ensurePrivateDir, writeFileAtomic } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import type { DeviceKeyAlgorithm } from './attested-key';
import { EkAlgorithm, parseHandle } from './tpm-tools';

/**
 * AgentState: agent.json in the --out directory, what a renewal needs besides cert.pem: the device, the
 * EST URL it enrolled at, and the persistent TPM handles of its AK and of the certificate's key (the key
 * itself never leaves the TPM; `handle:<keyHandle>` is how openssl's tpm2 provider loads it).
 */
export interface AgentState {
  device: string;
  est: string;
  akHandle: string;
  keyHandle: string;
  /** keySlots: the two handles a renewal alternates between (the new key is made beside the current one) */
  keySlots: [string, string];
  /** keyDecrypt: the device key is also a decrypt key (enroll --key-decrypt); a renewal makes its next key the same way */
  keyDecrypt?: boolean;
  /**
   * ekAlg: the EK the device enrolled with (enroll --ek-alg); the enrollment again after a transfer command
   * uses the same one (its EK certificate is the one the TPM's NV index or --ek-cert holds). Absent in an
   * agent.json written before it was recorded: the enroll default, rsa.
   */
  ekAlg?: EkAlgorithm;
}

/** keyAlgorithmOf: the type of the device key a certificate certifies, so a renewal or a transfer makes the next key the same type. */
export const keyAlgorithmOf = (cert: crypto.X509Certificate): DeviceKeyAlgorithm => (cert.publicKey.asymmetricKeyType === 'rsa' ? 'rsa2048' : 'ecc256');

/** the files of --out (README "Device agent") */
export const FILES = { cert: 'cert.pem', chain: 'chain.pem', ak: 'ak.pem', state: 'agent.json' } as const;

/** Trust: the CA chain the agent trusts (--trust): PEM text for TLS, the certificates to check an issued one. */
export interface Trust {
  file: string;
  pem: string;
  certs: crypto.X509Certificate[];
}

/** loadTrust reads --trust; a missing, unreadable or certificate-less file is a clear error before anything else runs. */
export function loadTrust(file: string): Trust {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DeviceCaError('bad-request', `--trust ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new DeviceCaError('bad-request', `--trust ${file}: no PEM certificate in it (expected the CA chain, e.g. the server's ca/chain.pem)`);
  const certs = blocks.map((b, i) => {
    try {
      return new crypto.X509Certificate(b);
    } catch {
      throw new DeviceCaError('bad-request', `--trust ${file}: certificate ${i + 1} does not parse`);
    }
  });
  return { file: path.resolve(file), pem, certs };
}

/** readCertificateFile reads a DER or PEM certificate (--ek-cert) and returns its DER. */
export function readCertificateFile(file: string, what: string): Buffer {
  let b: Buffer;
  try {
    b = fs.readFileSync(file);
  } catch (e) {
    throw new DeviceCaError('bad-request', `${what} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return new crypto.X509Certificate(b).raw;
  } catch {
    throw new DeviceCaError('bad-request', `${what} ${file}: not a DER or PEM certificate`);
  }
}

/**
 * checkIssued: the certificate the server returned is for the TPM key (same public key) and chains to a
 * certificate of the trust file, so what the agent writes is usable.
 */
export function checkIssued(certDer: Buffer, spki: Buffer, trust: Trust): crypto.X509Certificate {
  const cert = new crypto.X509Certificate(certDer);
  if (!cert.publicKey.export({ type: 'spki', format: 'der' }).equals(spki)) throw new DeviceCaError('bad-request', 'the issued certificate is not for the TPM key');
  if (!trust.certs.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    throw new DeviceCaError('bad-request', `the issued certificate does not chain to --trust ${trust.file}`);
  }
  return cert;
}

/** readState reads agent.json and cert.pem of an enrolled --out directory. */
export function readState(out: string): { state: AgentState; cert: crypto.X509Certificate } {
  let state: AgentState;
  let cert: crypto.X509Certificate;
  try {
    state = JSON.parse(fs.readFileSync(path.join(out, FILES.state), 'utf8')) as AgentState;
    cert = new crypto.X509Certificate(fs.readFileSync(path.join(out, FILES.cert)));
  } catch (e) {
    throw new DeviceCaError('not-found', `--out ${out}: no enrolled device here (${FILES.state} and ${FILES.cert} from "agent enroll"): ${(e as Error).message}`);
  }
  for (const h of [state.akHandle, state.keyHandle, ...state.keySlots]) parseHandle(h, `${FILES.state} handle`);
  return { state, cert };
}

/**
 * commit writes the result of an enrollment or renewal: every file by temporary file + rename, cert.pem
 * LAST, so cert.pem is either the old certificate or the new one and the files beside it are already
 * right for it (a renewal that dies before the rename leaves the old set; see renewal's key check).
 */
export function commit(out: string, f: { cert: crypto.X509Certificate; trust: Trust; state: AgentState; akCert?: Buffer }): void {
  ensurePrivateDir(out);
  const intermediates = f.trust.certs.filter((c) => c.subject !== c.issuer);
  if (f.akCert) writeFileAtomic(path.join(out, FILES.ak), toPem(f.akCert, 'CERTIFICATE'), 0o644);
  writeFileAtomic(path.join(out, FILES.chain), [f.cert, ...intermediates].map((c) => c.toString()).join(''), 0o644);
  writeFileAtomic(path.join(out, FILES.state), JSON.stringify(f.state, null, 2) + '\n', 0o644);
  writeFileAtomic(path.join(out, FILES.cert), f.cert.toString(), 0o644);
}
