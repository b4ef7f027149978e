import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeviceCaError } from '../errors/device-ca-error';
import { AgentState, checkIssued, commit, FILES, loadTrust, readCertificateFile } from './agent-files';
import { attestedCsrFor, createDeviceKey, DeviceKeyAlgorithm, spkiOf } from './attested-key';
import { deviceSubject } from './attested-csr';
import { EstClient } from './est-client';
import { NodeHttpsTransport } from './node-https-transport';
import { EkAlgorithm, hex, resolveTcti, TpmTools } from './tpm-tools';

/** DEFAULT_HANDLES: the persistent handles the agent owns unless told otherwise (owner range, TCG handle registry leaves 0x8101xxxx to platforms and owners). */
export const DEFAULT_HANDLES = { ak: '0x81018000', keys: ['0x81018001', '0x81018002'] as [string, string] };

export interface EnrollOptions {
  est: string;
  device: string;
  secret: string;
  trust: string;
  out: string;
  /** ekCert: the EK certificate from a file, for a TPM without one in NV */
  ekCert?: string;
  /** ekChain: the EK certificate's issuers (manufacturer intermediates), PEM or DER files */
  ekChain?: string[];
  /** ekAlg: the TCG default EK to use, RSA 2048 (L-1, default) or ECC P-256 (L-2); its certificate is read from that EK's NV index */
  ekAlg?: EkAlgorithm;
  akHandle: number;
  keySlots: [number, number];
  tcti?: string;
  /** force: replace objects already persistent at the agent's handles (an earlier enrollment's AK and key) */
  force?: boolean;
  /** keyDecrypt: make the device key a decrypt key too (attested-key.ts DECRYPT_KEY_ATTRIBUTES), for encrypted firmware */
  keyDecrypt?: boolean;
  /** keyAlg: the device key's type, P-256 (default) or RSA 2048 (attested-key.ts keyTemplate) */
  keyAlg?: DeviceKeyAlgorithm;
}

/**
 * agentEnroll is `device-ca agent enroll`: the whole device side of TPM-attested enrollment (README
 * "Device agent"): EK certificate (NV or --ek-cert), EK and AK in the TPM (under a TCTI the agent speaks,
 * the EK derived once in-process and held until the activation, tpm-credential-session.ts EkSession; under
 * tabrmd by tpm2-tools), AK registration and credential activation, a new P-256 or RSA 2048 key in the TPM certified by the AK with the CA's nonce, CSR signed by that key,
 * simpleenroll with the one-time secret. --out is written only after the certificate came back and was
 * checked; the TPM objects made by a failed run are removed.
 */
export async function agentEnroll(o: EnrollOptions): Promise<{ certFile: string; serial: string }> {
  const trust = loadTrust(o.trust);
  const ekCertFile = o.ekCert === undefined ? undefined : readCertificateFile(o.ekCert, '--ek-cert');
  const ekChain = (o.ekChain ?? []).map((f) => readCertificateFile(f, '--ek-chain'));
  const tcti = resolveTcti(o.tcti);
  const est = new EstClient(o.est, new NodeHttpsTransport(trust.pem), { id: o.device, secret: o.secret });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-agent-'));
  const tpm = new TpmTools(work, tcti);
  const made: number[] = [];
  try {
    // a working enrollment's AK and key live at these handles: replacing them is a decision, not a side effect
    const held = tpm.persistentHandles();
    const taken = [o.akHandle, ...o.keySlots].filter((h) => held.includes(h));
    if (taken.length > 0 && !o.force) {
      throw new DeviceCaError(
        'conflict',
        `the TPM already holds objects at ${taken.map(hex).join(', ')} (an earlier enrollment's AK or key?): use "agent renew", other --ak-handle/--key-handles, or --force to replace them`,
      );
    }
    const ekAlg = o.ekAlg ?? 'rsa';
    const ekCertificate = ekCertFile ?? tpm.ekCertificate(ekAlg);
    let akCert: Buffer;
    if (tpm.speaksTcti) {
      // the EK derived once, in-process, and held from the AK's creation through the activation
      if (taken.includes(o.akHandle)) tpm.evict(o.akHandle);
      const ek = await tpm.ekSession(ekAlg);
      try {
        const akPublic = await ek.createAk(o.akHandle);
        made.push(o.akHandle);
        const challenge = await est.registerAk({ ekCertificate, ekChain, ekPublic: ek.ekPublic, akPublic });
        const secret = await ek.activateCredential(o.akHandle, { credentialBlob: challenge.credentialBlob, secret: challenge.encryptedSecret });
        akCert = await est.activateAk(challenge.akName, secret);
      } finally {
        await ek.close();
      }
    } else {
      tpm.run('tpm2_createek', ['-c', 'ek.ctx', '-G', ekAlg, '-u', 'ek.pub']);
      tpm.run('tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', 'ak.pub', '-n', 'ak.name']);
      tpm.persist('ak.ctx', o.akHandle);
      made.push(o.akHandle);
      const challenge = await est.registerAk({ ekCertificate, ekChain, ekPublic: tpm.read('ek.pub'), akPublic: tpm.read('ak.pub') });
      const secret = await tpm.activateCredential(o.akHandle, tpm.read('ek.pub'), { credentialBlob: challenge.credentialBlob, secret: challenge.encryptedSecret });
      akCert = await est.activateAk(challenge.akName, secret);
    }

    const keyHandle = o.keySlots[0];
    const keyPublic = createDeviceKey(tpm, keyHandle, o.keyDecrypt, o.keyAlg);
    made.push(keyHandle);
    const nonce = await est.nonce();
    const csr = await attestedCsrFor(tpm, { keyHandle, akHandle: o.akHandle, keyPublic, nonce, subject: deviceSubject(o.device) });
    const cert = checkIssued(await est.enroll('simpleenroll', csr), spkiOf(keyPublic), trust);
    const state: AgentState = {
      device: o.device,
      est: o.est,
      akHandle: hex(o.akHandle),
      keyHandle: hex(keyHandle),
      keySlots: [hex(o.keySlots[0]), hex(o.keySlots[1])],
      ekAlg,
      ...(o.keyDecrypt ? { keyDecrypt: true } : {}),
    };
    commit(o.out, { cert, trust, state, akCert });
    made.length = 0;
    return { certFile: path.join(o.out, FILES.cert), serial: cert.serialNumber };
  } finally {
    for (const h of made.reverse()) {
      try {
        tpm.evict(h);
      } catch {
        // best effort: the TPM that failed the enrollment may be the reason this fails too
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}
