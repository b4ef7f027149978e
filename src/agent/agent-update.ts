import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pemBlocks } from '../ca/pem';
import { CMS_OID } from '../cms/cms-algorithms';
import { HardwareTarget } from '../cms/firmware-attributes';
import { EnvelopeRecipient } from '../cms/firmware-envelope-open';
import { GroupKey, openGroupKeyEnvelope } from '../cms/firmware-group-key';
import { decryptKeyIdOfSignerInfos } from '../cms/firmware-group-release';
import { readSignedDataFile } from '../cms/signed-data-file';
import { buildFirmwareReceipt } from '../cms/firmware-receipt';
import { fdSink } from '../cms/file-range';
import { OpenedRelease, openReleaseFile, VerifiedRelease } from '../cms/firmware-release-verify';
import { writeFileAtomic, writeFileAtomicWith } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import { FILES, loadTrust, readState } from './agent-files';
import { spkiOf } from './attested-key';
import { HttpReply } from './http-reply';
import { OpensslTlsTransport } from './openssl-tls-transport';
import { keyCanDecrypt, tpmEcdhZ, tpmOaepDecrypt, tpmSigningKey } from './tpm-device-key';
import { LOAD_ERROR, loadErrorOf } from './load-error-code';
import { hex, parseHandle, TpmTools } from './tpm-tools';

/** FIRMWARE_STATE: the file of --out that remembers, per firmware name, the version the agent installed (anti-rollback survives restarts). */
export const FIRMWARE_STATE = 'firmware.json';

/** InstalledFirmware: one entry of firmware.json. */
export interface InstalledFirmware {
  version: number;
  /** sha256: of the image written, hex */
  sha256: string;
  image: string;
  installedAt: string;
  /** receipt: whether the server recorded the RFC 4108 load receipt of this version (else the next run posts it again) */
  receipt: boolean;
}

/** NAME_RE: the firmware names the agent asks for (a URL path segment; the server's own rule is narrower or equal). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface UpdateOptions {
  /** est: the EST base URL; only its origin is used (the firmware routes are on the same HTTPS listener). Default: agent.json's */
  est?: string;
  trust: string;
  /** firmwareChain: PEM file with the firmware signer CA and the root (the server's ca/firmware-chain.pem) */
  firmwareChain: string;
  out: string;
  name: string;
  /** imageOut: where the image goes; default <out>/firmware/<name>.bin */
  imageOut?: string;
  roles: readonly string[];
  /** require: how many of `roles` must have approved (M-of-N); default all */
  require?: number;
  hardware?: HardwareTarget;
  tcti?: string;
}

/** ReceiptResult: what became of the load receipt: recorded (HTTP 201), already recorded (200), or why not. */
export type ReceiptResult = { posted: true; status: number } | { posted: false; reason: string };

export type UpdateResult =
  | { outcome: 'installed'; name: string; version: number; previous: number | null; image: string; encrypted: boolean; approvals: string[]; receipt: ReceiptResult }
  | { outcome: 'up-to-date'; name: string; version: number; receipt: ReceiptResult | null };

/**
 * agentUpdate is `device-ca agent update --check`: GET /firmware/<name>/latest over TLS authenticated by
 * the device certificate and its TPM key (an encrypted release is served only that way), then, with
 * nothing but the firmware chain: verifyFirmwareRelease (the CA's counter-signature, every approval and
 * role, the hardware; an encrypted release opened in the TPM by ECDH, tpmEcdhZ, or RSA-OAEP, tpmOaepDecrypt;
 * a release to a group key: the key fetched first, fetchGroupKey), the package name, and
 * the version against the one remembered in firmware.json (RFC 4108 §2.2.1 verNum, anti-rollback: a
 * lower version is refused, the same one is "up to date"; both decided once the CA's counter-signature
 * verified, before anything is decrypted). Streamed: the release is downloaded to a file, and the image
 * decrypted chunk by chunk into a temporary file that is renamed into place only after every check passed;
 * then firmware.json is updated. Refusals are DeviceCaErrors naming the check; each refusal of a
 * release the server named (Content-Disposition) is also posted as an RFC 4108 §4 load error report
 * signed by the TPM key (load-error-code.ts picks the code), so `firmware status` shows it; the message
 * says whether the server recorded it.
 */
export async function agentUpdate(o: UpdateOptions): Promise<UpdateResult> {
  if (!NAME_RE.test(o.name)) throw new DeviceCaError('bad-request', `--name ${JSON.stringify(o.name)}: letters, digits, ".", "_" and "-" only`);
  const trust = loadTrust(o.trust);
  const chain = readChain(o.firmwareChain);
  const { state, cert } = readState(o.out);
  const installed = readInstalled(o.out)[o.name];
  const base = baseUrl(o.est ?? state.est);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-agent-'));
  const tpm = new TpmTools(work, o.tcti);
  try {
    const keyHandle = parseHandle(state.keyHandle, `${FILES.state} keyHandle`);
    if (!tpm.persistentHandles().includes(keyHandle) || !spkiOf(tpm.readPublic(keyHandle)).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
      throw new DeviceCaError('not-found', `the key of ${path.join(o.out, FILES.cert)} is not at TPM handle ${state.keyHandle} (TCTI "${tpm.tcti}")`);
    }
    const transport = new OpensslTlsTransport({
      trustFile: trust.file,
      certFile: path.resolve(o.out, FILES.cert),
      keyHandle,
      tcti: tpm.tcti,
      afterUse: () => tpm.flushNow(),
    });
    const url = new URL(`/firmware/${o.name}/latest`, base);
    // the release goes to a file as it arrives and is read from there: memory holds a chunk, not the image
    const downloaded = path.join(work, 'release.der');
    let reply: Omit<HttpReply, 'body'>;
    try {
      reply = await transport.download(url, { Accept: 'application/cms' }, downloaded);
    } catch (e) {
      throw new DeviceCaError('ca-unavailable', `cannot reach ${url.origin}: ${(e as Error).message}`, { cause: e });
    }
    if (reply.status === 404) throw new DeviceCaError('not-found', `no release of ${o.name} for this device at ${url.origin}`);
    if (reply.status !== 200) throw new DeviceCaError(reply.status === 403 ? 'forbidden' : 'internal', `the server refused the download (HTTP ${reply.status}): ${replyText(downloaded)}`);

    const mayDecrypt = (how: string): void => {
      if (keyCanDecrypt(tpm, keyHandle)) return;
      throw new DeviceCaError(
        'bad-algorithm',
        `the release is encrypted by ${how} to this device, and its TPM key at ${hex(keyHandle)} is sign-only (no decrypt attribute): enroll with "agent enroll --key-decrypt" on a profile with tpmKeyDecrypt: true`,
      );
    };
    const recipient: EnvelopeRecipient = {
      certificate: cert.raw,
      agree: (point) => {
        mayDecrypt('ECDH');
        return tpmEcdhZ(tpm, keyHandle, point);
      },
      decryptOaep: (encryptedKey) => {
        mayDecrypt('RSA-OAEP');
        return tpmOaepDecrypt(tpm, keyHandle, encryptedKey);
      },
    };
    // the release the server says it sent (Content-Disposition), for an error report if it is refused
    const served = /^attachment; filename="(.+)-(0|[1-9][0-9]{0,15})\.cms"$/.exec(reply.headers['content-disposition'] ?? '');
    const refuse = async (e: DeviceCaError): Promise<never> => {
      if (!served) throw e;
      const code = loadErrorOf(e);
      const r = await sendReceipt(transport, base, {
        tpm,
        keyHandle,
        certificate: cert.raw,
        device: state.device,
        name: served[1],
        version: Number(served[2]),
        hwType: o.hardware?.type,
        error: LOAD_ERROR[code],
      });
      const said = r.posted ? `load error report (${code}) recorded` : `load error report (${code}) not recorded: ${r.reason}`;
      throw new DeviceCaError(e.code, `${e.message}; ${said}`, { detail: e.detail, cause: e });
    };
    const refused = (e: unknown): DeviceCaError =>
      e instanceof DeviceCaError
        ? new DeviceCaError(e.code, `${o.name}: refused: ${e.message}`, { detail: e.detail, cause: e })
        : new DeviceCaError('bad-request', `${o.name}: refused: the release cannot be read (${(e as Error).message})`, { cause: e });
    const releaseFd = fs.openSync(downloaded, 'r');
    try {
      // a release to a group key: the key first (a refusal of it is reported like any other; an unreachable
      // server is not a verdict on the release)
      let groupKey: GroupKey | undefined;
      try {
        groupKey = await fetchGroupKey(transport, base, o.name, releaseFd, recipient);
      } catch (e) {
        if (e instanceof DeviceCaError && e.code !== 'ca-unavailable') return await refuse(e);
        throw e;
      }
      let release: OpenedRelease;
      try {
        release = openReleaseFile(releaseFd, { chain, recipient, groupKey, roles: o.roles, require: o.require, hardware: o.hardware, now: new Date() });
      } catch (e) {
        return await refuse(refused(e));
      }
      // the CA's counter-signature verified: the name and version are the CA's, checked before decrypting anything
      const { name, version } = release.metadata;
      if (name !== o.name) return await refuse(new DeviceCaError('forbidden', `${o.name}: refused: the server sent a release of ${JSON.stringify(name)}`));
      if (installed && version < installed.version) {
        return await refuse(new DeviceCaError('forbidden', `${o.name}: refused: version ${version} is below the installed version ${installed.version} (anti-rollback, RFC 4108)`));
      }
      const postReceipt = async (entry: InstalledFirmware): Promise<ReceiptResult> => {
        const r = await sendReceipt(transport, base, { tpm, keyHandle, certificate: cert.raw, device: state.device, name, version, hwType: o.hardware?.type });
        if (r.posted) writeInstalled(o.out, { ...readInstalled(o.out), [o.name]: { ...entry, receipt: true } });
        return r;
      };
      if (installed && version === installed.version) return { outcome: 'up-to-date', name, version, receipt: installed.receipt === false ? await postReceipt(installed) : null };

      // the image is decrypted chunk by chunk into a temporary file beside its place, and renamed into
      // place only when every check passed (a bad padding, approval or role leaves nothing written)
      const image = path.resolve(o.imageOut ?? path.join(o.out, 'firmware', `${o.name}.bin`));
      const sha256 = crypto.createHash('sha256');
      let approvals: VerifiedRelease['approvals'];
      try {
        approvals = writeFileAtomicWith(
          image,
          (fd) => {
            const write = fdSink(fd);
            return release.verifyImage((c) => {
              sha256.update(c);
              write(c);
            });
          },
          0o600,
        );
      } catch (e) {
        return await refuse(refused(e));
      }
      const entry: InstalledFirmware = { version, sha256: sha256.digest('hex'), image, installedAt: new Date().toISOString(), receipt: false };
      writeInstalled(o.out, { ...readInstalled(o.out), [o.name]: entry });
      const receipt = await postReceipt(entry);
      return { outcome: 'installed', name, version, previous: installed?.version ?? null, image, encrypted: release.encrypted, approvals: approvals.map((a) => a.role), receipt };
    } finally {
      fs.closeSync(releaseFd);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * fetchGroupKey: for a release to a group key (RFC 4108 decryptKeyID, docs/firmware.md "Group key"), the
 * key: GET /firmware/keys/<id> over the same TLS, an EnvelopedData to this device's certificate opened
 * with the TPM key (the ECDH path of a per-device release). Undefined for a release that names no key.
 * The release's signature over the identifier is checked afterwards by verifyFirmwareRelease, which
 * refuses a key whose identifier is not the one the CA signed.
 */
async function fetchGroupKey(transport: OpensslTlsTransport, base: URL, name: string, releaseFd: number, recipient: EnvelopeRecipient): Promise<GroupKey | undefined> {
  let keyId: string | null;
  try {
    keyId = decryptKeyIdOfSignerInfos(readSignedDataFile(releaseFd).parts.signerInfos);
  } catch (e) {
    throw new DeviceCaError('bad-request', `${name}: refused: the release cannot be read (${(e as Error).message})`, { cause: e });
  }
  if (keyId === null) return undefined;
  const url = new URL(`/firmware/keys/${keyId}`, base);
  let reply: HttpReply;
  try {
    reply = await transport.request('GET', url, { Accept: 'application/cms' });
  } catch (e) {
    throw new DeviceCaError('ca-unavailable', `cannot reach ${url.origin}: ${(e as Error).message}`, { cause: e });
  }
  if (reply.status !== 200) {
    const why = reply.body.toString('utf8').trim().slice(0, 300);
    throw new DeviceCaError(reply.status === 404 ? 'not-found' : reply.status === 403 ? 'forbidden' : 'internal', `${name}: the server refused group key ${keyId} (HTTP ${reply.status}): ${why}`);
  }
  try {
    return openGroupKeyEnvelope(reply.body, recipient);
  } catch (e) {
    if (e instanceof DeviceCaError) throw new DeviceCaError(e.code, `${name}: refused: group key ${keyId}: ${e.message}`, { cause: e });
    throw e;
  }
}

/**
 * sendReceipt posts the RFC 4108 §3 load receipt (or, with `error`, the §4 load error report with that
 * code) of `name` `version` (hwSerialNum = the device id, hwType
 * --hardware's type or CMS_OID.genericHardware), signed by the device key in the TPM, to
 * POST /firmware/<name>/<version>/receipt over the same TLS as the download. A refusal or an unreachable
 * server is returned, not thrown: the image is installed either way, and the next run posts it again.
 */
async function sendReceipt(
  transport: OpensslTlsTransport,
  base: URL,
  r: { tpm: TpmTools; keyHandle: number; certificate: Buffer; device: string; name: string; version: number; hwType?: string; error?: number },
): Promise<ReceiptResult> {
  const hw = { hwType: r.hwType ?? CMS_OID.genericHardware, hwSerial: r.device, package: { name: r.name, version: r.version } };
  const der = await buildFirmwareReceipt(
    r.error === undefined ? { kind: 'loaded', ...hw } : { kind: 'error', ...hw, errorCode: r.error },
    { certificate: r.certificate, key: tpmSigningKey(r.tpm, r.keyHandle) },
    new Date(),
  );
  const url = new URL(`/firmware/${r.name}/${r.version}/receipt`, base);
  try {
    const reply = await transport.request('POST', url, { 'Content-Type': 'application/cms' }, der);
    if (reply.status === 200 || reply.status === 201) return { posted: true, status: reply.status };
    return { posted: false, reason: `HTTP ${reply.status}: ${reply.body.toString('utf8').replace(/\s+/g, ' ').trim().slice(0, 300)}` };
  } catch (e) {
    return { posted: false, reason: (e as Error).message };
  }
}

/** readInstalled: firmware.json of --out ({} before the first update); a damaged file is an error, never "nothing installed" (that would re-open rollback). */
export function readInstalled(out: string): Record<string, InstalledFirmware> {
  const file = path.join(out, FIRMWARE_STATE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new DeviceCaError('bad-request', `${file}: cannot read it (${(e as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  const ok =
    parsed !== null &&
    typeof parsed === 'object' &&
    !Array.isArray(parsed) &&
    Object.values(parsed as object).every((x: unknown) => typeof x === 'object' && x !== null && Number.isSafeInteger((x as InstalledFirmware).version) && (x as InstalledFirmware).version >= 0);
  if (!ok) throw new DeviceCaError('bad-request', `${file} is damaged: restore it (it holds the installed versions that stop a rollback)`);
  return parsed as Record<string, InstalledFirmware>;
}

function writeInstalled(out: string, all: Record<string, InstalledFirmware>): void {
  writeFileAtomic(path.join(out, FIRMWARE_STATE), JSON.stringify(all, null, 2) + '\n', 0o644);
}

/** replyText: the start of a refusal's body, for the error message. */
function replyText(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(Math.min(fs.fstatSync(fd).size, 600));
    fs.readSync(fd, b, 0, b.length, 0);
    return b.toString('utf8').trim().slice(0, 300);
  } finally {
    fs.closeSync(fd);
  }
}

/** readChain: the firmware chain file (PEM): at least the signer CA and the root. */
function readChain(file: string): Buffer[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch (e) {
    throw new DeviceCaError('bad-request', `--firmware-chain ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const certs = pemBlocks(text, 'CERTIFICATE');
  if (certs.length < 2) throw new DeviceCaError('bad-request', `--firmware-chain ${file}: expected the firmware signer CA and the root (the server's ca/firmware-chain.pem)`);
  return certs;
}

/** baseUrl: the origin of the EST URL; the firmware routes are on the same HTTPS listener. */
function baseUrl(est: string): URL {
  let u: URL;
  try {
    u = new URL(est);
  } catch {
    throw new DeviceCaError('bad-request', `--est: not a URL: ${est}`);
  }
  if (u.protocol !== 'https:') throw new DeviceCaError('bad-request', `--est must be an https:// URL (the device authenticates with its certificate), got ${u.protocol}`);
  return new URL(u.origin);
}
