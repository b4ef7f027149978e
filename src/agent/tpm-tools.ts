import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tpm2ToolsCredentialFile } from '../attestation/tpm/make-credential';
import { DeviceCaError } from '../errors/device-ca-error';
import { parseTcti, TctiConfig } from './tcti-config';
import { activateCredentialOnce, CredentialChallenge, EkSession, templateOf } from './tpm-credential-session';
import { openTpmTransport } from './tpm-transport';
import { certifyCommand, certifyOnce, CertifyResponse, parseCertifyResponse } from './tpm-certify-command';
import { tpmToolError } from './tpm-tool-error';

/** DEFAULT_TCTI: the kernel's resource manager, where a device's TPM is in the field. */
export const DEFAULT_TCTI = 'device:/dev/tpmrm0';

/** EK_CERT_NV_RSA: the NV index of the RSA 2048 EK certificate (TCG EK Credential Profile 2.0 §2.2.1.4). */
export const EK_CERT_NV_RSA = 0x01c00002;
/**
 * EK_CERT_NV: the NV index of each default EK's certificate (TCG EK Credential Profile 2.0 §2.2.1.4,
 * §2.2.1.5): RSA 2048 (L-1), ECC P-256 (L-2), ECC P-384 (high range H-3; swtpm provisions this one).
 */
export const EK_CERT_NV = { rsa: EK_CERT_NV_RSA, ecc: 0x01c0000a, ecc384: 0x01c00016 } as const;

/** EkAlgorithm: which of the TCG default EKs the agent uses (`agent enroll --ek-alg`), as tpm2_createek -G names it. */
export type EkAlgorithm = keyof typeof EK_CERT_NV;

/**
 * TpmTools is the agent's one door to the TPM: every TPM operation is a tpm2-tools 5.4 command run here,
 * with TPM2TOOLS_TCTI set to the TCTI the agent was given, in a private work directory for the tools'
 * context files. TPM2_Certify with a nonce is marshalled by the agent and sent in-process (with
 * resubmission) where it speaks the TCTI, else with tpm2_send. There the EK, too, is derived once in-process
 * and the AK made under it (ekSession), instead of tpm2_createek + tpm2_createak. The credential activation, whose EK policy session must live across several commands, is spoken in-process
 * over one connection (tpm-credential-session.ts) under the TCTIs the agent can speak (device, swtpm,
 * mssim); under others (tabrmd) it runs as tpm2-tools commands.
 * Without a resource manager (swtpm, mssim, /dev/tpm0) transient objects and sessions stay loaded after
 * a tool exits, so they are flushed after each command; under /dev/tpmrm0 or tpm2-abrmd that is not needed.
 */
export class TpmTools {
  readonly tcti: string;
  /** tctiConfig: the TCTI as parsed (tcti-config.ts); `other` kinds are reached only through tpm2-tools */
  readonly tctiConfig: TctiConfig;
  private readonly flush: boolean;
  constructor(
    private readonly workDir: string,
    tcti: string | undefined = process.env.TPM2TOOLS_TCTI,
  ) {
    this.tcti = resolveTcti(tcti);
    this.tctiConfig = parseTcti(this.tcti);
    const c = this.tctiConfig;
    this.flush = !((c.kind === 'device' && /^\/dev\/tpmrm\d*$/.test(c.path)) || (c.kind === 'other' && c.name === 'tabrmd'));
  }

  /** file: a path in the work directory (tools write their outputs there). */
  file(name: string): string {
    return path.join(this.workDir, name);
  }

  read(name: string): Buffer {
    return fs.readFileSync(this.file(name));
  }

  write(name: string, data: Buffer): string {
    fs.writeFileSync(this.file(name), data, { mode: 0o600 });
    return this.file(name);
  }

  /** run one tool; a failure becomes a DeviceCaError with the cause a person can act on (tpm-tool-error.ts). */
  run(tool: string, args: string[], input?: Buffer): Buffer {
    try {
      return this.exec(tool, args, input);
    } finally {
      this.flushNow();
    }
  }

  private exec(tool: string, args: string[], input: Buffer | undefined, quiet = false): Buffer {
    const r = spawnSync(tool, args, { cwd: this.workDir, env: { ...process.env, TPM2TOOLS_TCTI: this.tcti }, input, maxBuffer: 1 << 20 });
    if (r.error) {
      if (quiet) return Buffer.alloc(0);
      const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new DeviceCaError('key-backend', missing ? `${tool} not found: install tpm2-tools (Debian package tpm2-tools, version 5.4 or later)` : `${tool}: ${r.error.message}`);
    }
    if (r.status !== 0 && !quiet) throw tpmToolError(tool, r.stderr.toString('utf8'), this.tcti);
    return r.stdout;
  }

  /**
   * activateCredential runs TPM2_ActivateCredential of the CA's challenge with the AK at `akHandle` and the
   * EK (public area `ekPublic`, context `ek.ctx`, TCG template L-1 or L-2, whose policy is
   * PolicySecret(endorsement)): the policy session is started, satisfied and used in one sequence. Spoken
   * in-process over one connection where the agent can (the kernel resource manager flushes a session
   * when a tool exits, tpm2_startauthsession(1)); else by tpm2-tools, whose sessions tpm2-abrmd keeps.
   * Returns the recovered secret.
   */
  async activateCredential(akHandle: number, ekPublic: Buffer, challenge: CredentialChallenge): Promise<Buffer> {
    if (this.tctiConfig.kind !== 'other') {
      this.flushNow();
      const t = await openTpmTransport(this.tctiConfig, this.tcti);
      try {
        return await activateCredentialOnce(t, { akHandle, ekPublic, challenge });
      } finally {
        await t.close();
      }
    }
    const credentialFile = this.write('credential.blob', tpm2ToolsCredentialFile({ credentialBlob: challenge.credentialBlob, secret: challenge.secret }));
    const activate = ['-c', hex(akHandle), '-C', 'ek.ctx', '-i', credentialFile, '-o', 'credential-secret.bin'];
    if (templateOf(ekPublic) === 'ecc384') {
      // H-3 has userWithAuth: the EK's empty password authorizes it, no policy session
      this.run('tpm2_activatecredential', activate);
      return this.read('credential-secret.bin');
    }
    try {
      this.exec('tpm2_startauthsession', ['--policy-session', '-S', 'ek-session.ctx'], undefined);
      this.exec('tpm2_policysecret', ['-S', 'ek-session.ctx', '-c', 'e'], undefined);
      this.exec('tpm2_activatecredential', [...activate, '-P', 'session:ek-session.ctx'], undefined);
    } finally {
      this.exec('tpm2_flushcontext', ['ek-session.ctx'], undefined, true);
      this.flushNow();
    }
    return this.read('credential-secret.bin');
  }

  /**
   * ekSession derives the TCG default EK `alg` once, in-process, and holds it on one TPM connection for the
   * AK's creation and the credential activation (EkSession); only under the TCTIs the agent speaks
   * (speaksTcti), and nothing else may use a socket TPM (swtpm, mssim) until it is closed.
   */
  async ekSession(alg: EkAlgorithm): Promise<EkSession> {
    this.flushNow();
    const t = await openTpmTransport(this.tctiConfig, this.tcti);
    try {
      return await EkSession.start(t, alg);
    } catch (e) {
      await t.close();
      throw e;
    }
  }

  /** speaksTcti: the agent talks to this TPM itself (device, swtpm, mssim), not only through tpm2-tools (tabrmd). */
  get speaksTcti(): boolean {
    return this.tctiConfig.kind !== 'other';
  }

  /** flushNow frees transient objects and sessions where no resource manager does (after openssl used the TPM, too). */
  flushNow(): void {
    if (!this.flush) return;
    this.exec('tpm2_flushcontext', ['-t'], undefined, true);
    this.exec('tpm2_flushcontext', ['-s'], undefined, true);
  }

  /** persistentHandles: the persistent objects the TPM holds now (tpm2_getcap handles-persistent). */
  persistentHandles(): number[] {
    const out = this.run('tpm2_getcap', ['handles-persistent']).toString('utf8');
    return [...out.matchAll(/0x([0-9a-fA-F]{8})/g)].map((m) => parseInt(m[1], 16));
  }

  /** evict removes a persistent object, if there is one at `handle`. */
  evict(handle: number): void {
    if (this.persistentHandles().includes(handle)) this.run('tpm2_evictcontrol', ['-C', 'o', '-c', hex(handle)]);
  }

  /** persist makes the object in context file `ctx` persistent at `handle` (replacing what was there). */
  persist(ctx: string, handle: number): void {
    this.evict(handle);
    this.run('tpm2_evictcontrol', ['-C', 'o', '-c', ctx, hex(handle)]);
  }

  /** readPublic: the TPM2B_PUBLIC of a persistent object. */
  readPublic(handle: number): Buffer {
    const name = `pub-${hex(handle)}.bin`;
    this.run('tpm2_readpublic', ['-c', hex(handle), '-o', name]);
    return this.read(name);
  }

  /**
   * ekCertificate reads the RSA or ECC EK certificate from its NV index; a TPM without one (many firmware TPMs,
   * a TPM whose NV was cleared) gets a message that names the --ek-cert flag. The index may hold padding
   * after the DER, so only the first TLV is returned.
   */
  ekCertificate(alg: EkAlgorithm = 'rsa'): Buffer {
    const index = EK_CERT_NV[alg];
    let nv: Buffer;
    try {
      this.run('tpm2_nvread', [hex(index), '-C', 'o', '-o', 'ek-nv.der']);
      nv = this.read('ek-nv.der');
    } catch (e) {
      if (e instanceof DeviceCaError && /handle is not correct|0x18b/i.test(e.detail ?? '')) {
        throw new DeviceCaError('not-found', `the TPM has no EK certificate in NV index ${hex(index)}: pass it with --ek-cert <file> (DER or PEM, from the TPM vendor)`);
      }
      throw e;
    }
    return firstTlv(nv);
  }

  /**
   * certify: TPM2_Certify of `keyHandle` by `akHandle` with qualifyingData = nonce: in-process under the
   * TCTIs the agent speaks, so TPM_RC_RETRY is resubmitted (certifyOnce); through tpm2_send under others (tabrmd).
   */
  async certify(keyHandle: number, akHandle: number, nonce: Buffer): Promise<CertifyResponse> {
    if (this.tctiConfig.kind === 'other') return parseCertifyResponse(this.run('tpm2_send', [], certifyCommand(keyHandle, akHandle, nonce)));
    this.flushNow();
    const t = await openTpmTransport(this.tctiConfig, this.tcti);
    try {
      return await certifyOnce(t, keyHandle, akHandle, nonce);
    } finally {
      await t.close();
    }
  }
}

/**
 * resolveTcti: the TCTI the agent uses (the given one, else DEFAULT_TCTI), checked to be readable
 * (tcti-config.ts), so a typo in TPM2TOOLS_TCTI is refused before anything is created.
 */
export function resolveTcti(tcti: string | undefined = process.env.TPM2TOOLS_TCTI): string {
  const t = tcti && tcti.trim() ? tcti.trim() : DEFAULT_TCTI;
  parseTcti(t);
  return t;
}

/** hex: a handle as the tools write it, 0x81010002. */
export const hex = (h: number): string => `0x${h.toString(16).padStart(8, '0')}`;

/** parseHandle reads a persistent handle given on the command line (0x81000000-0x817FFFFF, TPM 2.0 Part 2 §7.4). */
export function parseHandle(s: string, what: string): number {
  const n = /^0x[0-9a-fA-F]{8}$/.test(s) ? parseInt(s, 16) : NaN;
  if (!(n >= 0x81000000 && n <= 0x817fffff)) throw new DeviceCaError('bad-request', `${what} must be a persistent handle 0x81000000..0x817fffff, got "${s}"`);
  return n;
}

/** firstTlv: the first DER element of `b` (definite length), so NV padding after a certificate is dropped. */
function firstTlv(b: Buffer): Buffer {
  if (b.length < 2 || b[0] !== 0x30) throw new DeviceCaError('bad-request', 'the EK certificate in NV is not DER');
  let len = b[1];
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3 || b.length < 2 + n) throw new DeviceCaError('bad-request', 'the EK certificate in NV is not DER');
    len = b.readUIntBE(2, n);
    off = 2 + n;
  }
  if (off + len > b.length) throw new DeviceCaError('bad-request', 'the EK certificate in NV is truncated');
  return Buffer.from(b.subarray(0, off + len));
}
