import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm, KeyBackend, SigningKey } from '../keys/key-backend';
import { signatureAlgorithmFor } from '../keys/signature-algorithm';
import { algorithmOfKey } from '../keys/software-key-backend';
import { CaMaterial } from './certificate-authority';
import {
  KU,
  assembleCertificate,
  authorityKeyIdentifier,
  basicConstraints,
  encodeTbs,
  keyIdentifier,
  keyUsage,
  newSerial,
  subjectKeyIdentifier,
} from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { encodeName } from './name';
import { toPem } from './pem';

/** CaState is ca/state.json: which key and certificate serve each CA role. Written last, as the commit marker. */
export interface CaState {
  version: 1;
  root: { name: string; keyRef: string; certFile: string };
  issuing: { name: string; keyRef: string; certFile: string };
}

/** CaCertificate: a CA as relying parties see it, without its key (the root's key stays offline). */
export type CaCertificate = Omit<CaMaterial, 'key'>;

export interface CaHierarchy {
  root: CaCertificate;
  issuing: CaMaterial;
  state: CaState;
}

export const caDir = (cfg: Config): string => path.join(cfg.dataDir, 'ca');
const stateFile = (cfg: Config): string => path.join(caDir(cfg), 'state.json');

export function caExists(cfg: Config): boolean {
  return fs.existsSync(stateFile(cfg));
}

function writeAtomic(file: string, data: string | Buffer, mode = 0o644): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

async function signCaCert(args: {
  issuerKey: SigningKey;
  issuerName: Buffer;
  issuerKeyId?: Buffer;
  subjectName: Buffer;
  spki: Buffer;
  validitySeconds: number;
  pathLen?: number;
  now: Date;
}): Promise<Buffer> {
  const ski = keyIdentifier(args.spki);
  const extensions = [basicConstraints(true, args.pathLen), keyUsage([KU.digitalSignature, KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(ski)];
  if (args.issuerKeyId) extensions.push(authorityKeyIdentifier(args.issuerKeyId));
  const nb = new Date(Math.floor(args.now.getTime() / 1000) * 1000 - 3600_000);
  const tbs = encodeTbs({
    serial: newSerial(),
    signatureAlgorithm: args.issuerKey.signatureAlgorithm,
    issuer: args.issuerName,
    notBefore: nb,
    notAfter: new Date(nb.getTime() + args.validitySeconds * 1000),
    subject: args.subjectName,
    spki: args.spki,
    extensions,
  });
  return assembleCertificate(tbs, args.issuerKey.signatureAlgorithm, await args.issuerKey.sign(tbs));
}

/**
 * initCa creates the root and issuing CA keys and certificates. It refuses to run when a CA exists,
 * and writes state.json last so a crash half-way leaves no CA that looks complete.
 */
export async function initCa(cfg: Config, keys: KeyBackend, now = new Date()): Promise<CaHierarchy & { root: CaMaterial }> {
  if (caExists(cfg)) throw new DeviceCaError('conflict', `a CA already exists in ${caDir(cfg)}; refusing to overwrite`);
  const stamp = now.toISOString().slice(0, 10).replace(/-/g, '') + '-' + crypto.randomBytes(3).toString('hex');
  const rootAlg = (cfg.ca.root.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm;
  const issAlg = (cfg.ca.issuing.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm;
  const rootKey = await keys.generate('root', rootAlg, `${cfg.ca.root.name}-${stamp}`);
  const rootName = encodeName([
    { type: 'O', value: cfg.ca.organization },
    { type: 'CN', value: cfg.ca.root.commonName ?? `${cfg.ca.organization} Root CA` },
  ]);
  const rootDer = await signCaCert({ issuerKey: rootKey, issuerName: rootName, subjectName: rootName, spki: rootKey.spki, validitySeconds: cfg.ca.root.validity, now });
  const issKey = await keys.generate('issuing', issAlg, `${cfg.ca.issuing.name}-${stamp}`);
  const issName = encodeName([
    { type: 'O', value: cfg.ca.organization },
    { type: 'CN', value: cfg.ca.issuing.commonName ?? `${cfg.ca.organization} Issuing CA` },
  ]);
  const issDer = await signCaCert({
    issuerKey: rootKey,
    issuerName: rootName,
    issuerKeyId: keyIdentifier(rootKey.spki),
    subjectName: issName,
    spki: issKey.spki,
    validitySeconds: Math.min(cfg.ca.issuing.validity, cfg.ca.root.validity - 7200),
    pathLen: 0,
    now,
  });
  // the directory is made only now that both keys exist: a key backend failure leaves nothing behind
  const dir = caDir(cfg);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const rootFile = path.join(dir, `${cfg.ca.root.name}.crt`);
  const issFile = path.join(dir, `${cfg.ca.issuing.name}.crt`);
  writeAtomic(rootFile, rootDer);
  writeAtomic(issFile, issDer);
  writeAtomic(path.join(dir, `${cfg.ca.root.name}.pem`), toPem(rootDer, 'CERTIFICATE'));
  writeAtomic(path.join(dir, `${cfg.ca.issuing.name}.pem`), toPem(issDer, 'CERTIFICATE'));
  writeAtomic(path.join(dir, 'chain.pem'), toPem(issDer, 'CERTIFICATE') + toPem(rootDer, 'CERTIFICATE'));
  const state: CaState = {
    version: 1,
    root: { name: cfg.ca.root.name, keyRef: rootKey.ref, certFile: rootFile },
    issuing: { name: cfg.ca.issuing.name, keyRef: issKey.ref, certFile: issFile },
  };
  writeAtomic(stateFile(cfg), JSON.stringify(state, null, 2) + '\n');
  return { root: material(state.root.name, rootDer, rootKey), issuing: material(state.issuing.name, issDer, issKey), state };
}

/** loadCa opens an existing hierarchy: certificates from files, keys from the backend. */
export async function loadCa(cfg: Config, keys: KeyBackend, opts: { lazyKeys?: boolean } = {}): Promise<CaHierarchy> {
  if (!caExists(cfg)) throw new DeviceCaError('config', `no CA in ${caDir(cfg)}; run \`device-ca init\` first`);
  const state = JSON.parse(fs.readFileSync(stateFile(cfg), 'utf8')) as CaState;
  const rootDer = fs.readFileSync(state.root.certFile);
  const issDer = fs.readFileSync(state.issuing.certFile);
  const spki = certificateParts(issDer).spki;
  const check = (k: SigningKey): SigningKey => {
    if (!spki.equals(k.spki)) throw new DeviceCaError('config', `issuing CA key ${state.issuing.keyRef} does not match ${state.issuing.certFile}`);
    return k;
  };
  // the root key is not opened: serving never signs with it, and it may live on an offline token.
  // lazyKeys: the issuing key is opened on its first signature (CLI commands that only touch the store
  // then never log in to a token)
  const issKey = opts.lazyKeys ? lazySigningKey(state.issuing.keyRef, spki, async () => check(await keys.load(state.issuing.keyRef))) : check(await keys.load(state.issuing.keyRef));
  const issuing = material(state.issuing.name, issDer, issKey);
  const { key: _none, ...root } = material(state.root.name, rootDer, issKey);
  return { root, issuing, state };
}

/** lazySigningKey: a SigningKey described by its certificate's public key, loaded when it first signs. */
function lazySigningKey(ref: string, spki: Buffer, load: () => Promise<SigningKey>): SigningKey {
  const algorithm = algorithmOfKey(crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }));
  let loaded: Promise<SigningKey> | undefined;
  return {
    algorithm,
    ref,
    spki,
    signatureAlgorithm: signatureAlgorithmFor(algorithm),
    sign: async (data: Buffer) => {
      loaded ??= load();
      return (await loaded).sign(data);
    },
  };
}

function material(name: string, der: Buffer, key: SigningKey): CaMaterial {
  const parts = certificateParts(der);
  const x = new crypto.X509Certificate(der);
  return { name, der, subject: parts.subject, keyId: keyIdentifier(parts.spki), notAfter: new Date(x.validTo), key };
}
