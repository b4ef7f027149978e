import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeviceCaError } from '../errors/device-ca-error';
import { checkIssued, commit, FILES, keyAlgorithmOf, loadTrust, readState } from './agent-files';
import { attestedCsrFor, createDeviceKey, spkiOf } from './attested-key';
import { certificateSubject } from './attested-csr';
import { EstClient } from './est-client';
import { OpensslTlsTransport } from './openssl-tls-transport';
import { hex, parseHandle, resolveTcti, TpmTools } from './tpm-tools';

export interface RenewOptions {
  /** est: the EST base URL; default the one agent.json recorded at enrollment */
  est?: string;
  trust: string;
  out: string;
  tcti?: string;
}

/**
 * agentRenew is `device-ca agent renew`: a new key in the TPM (the free one of agent.json's two key
 * slots, of the current key's type), certified by the registered AK with a fresh nonce, sent with simplereenroll over TLS
 * authenticated by the current certificate and its key in the TPM (RFC 7030 §4.2.2). cert.pem is
 * replaced only after the new certificate came back and was checked; then the old key is evicted.
 * The current key is found by matching cert.pem's public key, so a renewal interrupted between
 * writing cert.pem and agent.json is still consistent on the next run.
 */
export async function agentRenew(o: RenewOptions): Promise<{ certFile: string; serial: string }> {
  const trust = loadTrust(o.trust);
  const { state, cert } = readState(o.out);
  const tcti = resolveTcti(o.tcti);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-agent-'));
  const tpm = new TpmTools(work, tcti);
  const slots = state.keySlots.map((h) => parseHandle(h, 'keySlots')) as [number, number];
  const currentSpki = cert.publicKey.export({ type: 'spki', format: 'der' });
  let made: number | undefined;
  try {
    const held = tpm.persistentHandles();
    const current = slots.find((h) => held.includes(h) && spkiOf(tpm.readPublic(h)).equals(currentSpki));
    if (current === undefined) throw new DeviceCaError('not-found', `the key of ${path.join(o.out, FILES.cert)} is in none of the TPM handles ${state.keySlots.join(', ')} (TCTI "${tpm.tcti}")`);
    const next = slots[0] === current ? slots[1] : slots[0];
    const est = new EstClient(
      o.est ?? state.est,
      new OpensslTlsTransport({ trustFile: trust.file, certFile: path.resolve(o.out, FILES.cert), keyHandle: current, tcti: tpm.tcti, afterUse: () => tpm.flushNow() }),
    );
    const nonce = await est.nonce();
    const keyPublic = createDeviceKey(tpm, next, state.keyDecrypt, keyAlgorithmOf(cert));
    made = next;
    const csr = await attestedCsrFor(tpm, { keyHandle: next, akHandle: parseHandle(state.akHandle, 'akHandle'), keyPublic, nonce, subject: certificateSubject(cert.raw) });
    const renewed = checkIssued(await est.enroll('simplereenroll', csr), spkiOf(keyPublic), trust);
    commit(o.out, { cert: renewed, trust, state: { ...state, est: o.est ?? state.est, keyHandle: hex(next) } });
    made = undefined;
    try {
      tpm.evict(current);
    } catch (e) {
      process.stderr.write(`device-ca agent: renewed, but the old key at ${hex(current)} stays in the TPM: ${(e as Error).message}\n`);
    }
    return { certFile: path.join(o.out, FILES.cert), serial: renewed.serialNumber };
  } finally {
    if (made !== undefined) {
      try {
        tpm.evict(made);
      } catch {
        // best effort, as in agentEnroll
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}
