import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pemBlocks } from '../ca/pem';
import { DeviceCommand, verifyDeviceCommand } from '../cms/device-command';
import { buildDeviceCommandReport, DeviceCommandReport, MAX_REASON } from '../cms/device-command-report';
import { DeviceCaError } from '../errors/device-ca-error';
import { agentEnroll } from './agent-enroll';
import { AgentState, FILES, keyAlgorithmOf, loadTrust, readState, Trust } from './agent-files';
import { FIRMWARE_STATE } from './agent-update';
import { spkiOf } from './attested-key';
import { HttpReply } from './http-reply';
import { NodeHttpsTransport } from './node-https-transport';
import { OpensslTlsTransport } from './openssl-tls-transport';
import { tpmSigningKey } from './tpm-device-key';
import { hex, parseHandle, TpmTools } from './tpm-tools';

export interface CommandOptions {
  /** in: a command file (`devices command --out`); or fetch: ask the service for this device's pending command */
  in?: string;
  fetch?: boolean;
  firmwareChain: string;
  out: string;
  tcti?: string;
  /** trust: the CA chain (PEM): the TLS of --fetch and of the report, and a transfer's enrollment */
  trust?: string;
  /** transfer only: the one-time secret of the new owner's claim and the EK files enroll may need */
  secret?: string;
  ekCert?: string;
  ekChain?: string[];
}

/** ReportResult: what became of the signed report: recorded (HTTP 201/200), or why not. */
export type ReportResult = { posted: true; status: number; outcome: 'done' | 'failed' } | { posted: false; reason: string };

export type CommandResult = { command: null; device: string } | { command: DeviceCommand; evicted: string[]; enrolled?: string; report?: ReportResult };

/**
 * agentCommand is `device-ca agent command --in <file> | --fetch`: a signed device command
 * (cms/device-command.ts) is verified (the firmware signer CA of --firmware-chain, this device's id from
 * agent.json, its validity; a fetched one also the nonce this agent sent) and carried out. retire: every
 * persistent TPM object of this identity (the AK and both key slots) is evicted, then the identity files
 * of --out (cert.pem, chain.pem, ak.pem, agent.json, firmware.json) are deleted, and the directory if
 * nothing else is left. transfer: the same, then `agent enroll` again at the same handles with the
 * secret the new owner gives (--secret) and the enroll choices agent.json recorded (EK algorithm), so the
 * device has a new AK, key and certificate under its new owner and nothing of the old identity.
 *
 * --fetch: GET /device-command?nonce=<32 fresh random bytes> over TLS with the device key (a retired or
 * released device's last certificate is accepted for this: ra/device-commands.ts); 204 is "no command".
 * Then a report (cms/device-command-report.ts) goes back to POST /device-command/report. The device key
 * is evicted last, and the report is signed with it just before (done, naming every handle evicted),
 * but posted only after the eviction and the file deletion succeeded (over TLS without a client
 * certificate: the key is gone; the signature is the proof). A failure while the key is still there is
 * reported failed with the reason; for a transfer a failed report is signed before the key goes too,
 * posted if the enrollment again does not complete. A report the server did not record is returned,
 * not thrown: the device has acted either way.
 */
export async function agentCommand(o: CommandOptions): Promise<CommandResult> {
  if (!o.in === !o.fetch) throw new DeviceCaError('bad-request', 'give one of --in <file> and --fetch');
  const chainText = readText(o.firmwareChain, '--firmware-chain');
  const { state, cert } = readState(o.out);
  const trust = o.trust !== undefined ? loadTrust(o.trust) : undefined;
  if (o.fetch && !trust) throw new DeviceCaError('bad-request', "--fetch needs --trust (the CA chain the server's TLS certificate must chain to)");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-agent-'));
  const tpm = new TpmTools(work, o.tcti);
  try {
    const keyHandle = parseHandle(state.keyHandle, `${FILES.state} keyHandle`);
    let der: Buffer;
    let deviceNonce: string | undefined;
    if (o.fetch) {
      if (!tpm.persistentHandles().includes(keyHandle) || !spkiOf(tpm.readPublic(keyHandle)).equals(cert.publicKey.export({ type: 'spki', format: 'der' })))
        throw new DeviceCaError('not-found', `the key of ${path.join(o.out, FILES.cert)} is not at TPM handle ${state.keyHandle} (TCTI "${tpm.tcti}")`);
      deviceNonce = crypto.randomBytes(32).toString('hex');
      const transport = new OpensslTlsTransport({ trustFile: (trust as Trust).file, certFile: path.resolve(o.out, FILES.cert), keyHandle, tcti: tpm.tcti, afterUse: () => tpm.flushNow() });
      const url = new URL(`/device-command?nonce=${deviceNonce}`, originOf(state.est));
      const reply = await send(() => transport.request('GET', url, { Accept: 'application/cms' }), url);
      if (reply.status === 204) return { command: null, device: state.device };
      if (reply.status !== 200)
        throw new DeviceCaError(reply.status === 403 ? 'forbidden' : 'internal', `the server refused the command fetch (HTTP ${reply.status}): ${reply.body.toString('utf8').trim().slice(0, 300)}`);
      der = reply.body;
    } else {
      der = readFile(o.in as string, '--in');
    }
    const command = verifyDeviceCommand(der, { chain: pemBlocks(chainText, 'CERTIFICATE'), device: state.device, now: new Date(), deviceNonce });
    if (command.command === 'transfer' && (!o.secret || !trust)) {
      throw new DeviceCaError(
        'bad-request',
        `a transfer command enrolls the device again under ${command.newOwner}: give --secret (from the new owner's "devices claim") and --trust; nothing was changed`,
      );
    }
    const report = deviceNonce === undefined ? null : new CommandReporter(tpm, keyHandle, cert.raw, state, command, deviceNonce, trust as Trust);

    const ours = [...new Set([state.akHandle, state.keyHandle, ...state.keySlots])].map((h) => parseHandle(h, `${FILES.state} handle`));
    const held = tpm.persistentHandles();
    const evicted: string[] = [];
    // the device key last: the report is signed with it
    const order = [...ours.filter((h) => h !== keyHandle), ...ours.filter((h) => h === keyHandle)].filter((h) => held.includes(h));
    let done: Buffer | null = null;
    let failedLater: Buffer | null = null;
    for (const h of order) {
      if (h === keyHandle && report) {
        done = await report.sign('done', undefined, order.map(hex));
        if (command.command === 'transfer') failedLater = await report.sign('failed', 'the enrollment under the new owner did not complete after the old key was evicted', order.map(hex));
      }
      try {
        tpm.evict(h);
      } catch (e) {
        if (report && tpm.persistentHandles().includes(keyHandle)) await report.post(await report.sign('failed', `evicting ${hex(h)}: ${(e as Error).message}`, evicted));
        throw e;
      }
      evicted.push(hex(h));
    }
    // the TPM objects first: identity files without a key are harmless, a key without its files would be orphaned
    for (const f of [FILES.cert, FILES.chain, FILES.ak, FIRMWARE_STATE, FILES.state]) fs.rmSync(path.join(o.out, f), { force: true });
    if (fs.readdirSync(o.out).length === 0) fs.rmdirSync(o.out);
    if (command.command !== 'transfer') return { command, evicted, ...(report && done ? { report: await report.post(done) } : {}) };
    const slots = state.keySlots.map((h) => parseHandle(h, `${FILES.state} keySlots`)) as [number, number];
    let enrolled: string;
    try {
      const r = await agentEnroll({
        est: state.est,
        device: state.device,
        secret: o.secret as string,
        trust: (trust as Trust).file,
        out: o.out,
        ekCert: o.ekCert,
        ekChain: o.ekChain,
        ekAlg: state.ekAlg,
        akHandle: parseHandle(state.akHandle, `${FILES.state} akHandle`),
        keySlots: slots,
        tcti: o.tcti,
        keyDecrypt: state.keyDecrypt,
        keyAlg: keyAlgorithmOf(cert),
      });
      enrolled = r.serial;
    } catch (e) {
      if (report && failedLater) await report.post(failedLater);
      throw e;
    }
    return { command, evicted, enrolled, ...(report && done ? { report: await report.post(done) } : {}) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** CommandReporter signs reports on one fetched command with the device key and posts them. */
class CommandReporter {
  constructor(
    private readonly tpm: TpmTools,
    private readonly keyHandle: number,
    private readonly certificate: Buffer,
    private readonly state: AgentState,
    private readonly command: DeviceCommand,
    private readonly deviceNonce: string,
    private readonly trust: Trust,
  ) {}

  sign(outcome: 'done' | 'failed', reason: string | undefined, evicted: string[]): Promise<Buffer> {
    const r: DeviceCommandReport = {
      device: this.state.device,
      command: this.command.command,
      nonce: this.command.nonce,
      deviceNonce: this.deviceNonce,
      outcome,
      ...(reason !== undefined ? { reason: reason.slice(0, MAX_REASON) } : {}),
      evicted,
    };
    return buildDeviceCommandReport(r, { certificate: this.certificate, key: tpmSigningKey(this.tpm, this.keyHandle) }, new Date());
  }

  /** post sends a signed report (TLS without a client certificate: the signature authenticates it). */
  async post(der: Buffer): Promise<ReportResult> {
    const url = new URL('/device-command/report', originOf(this.state.est));
    try {
      const reply = await new NodeHttpsTransport(this.trust.pem).request('POST', url, { 'Content-Type': 'application/cms' }, der);
      const text = reply.body.toString('utf8');
      if (reply.status === 200 || reply.status === 201) return { posted: true, status: reply.status, outcome: (JSON.parse(text) as { state: string }).state === 'done' ? 'done' : 'failed' };
      return { posted: false, reason: `HTTP ${reply.status}: ${text.replace(/\s+/g, ' ').trim().slice(0, 300)}` };
    } catch (e) {
      return { posted: false, reason: (e as Error).message };
    }
  }
}

async function send(fn: () => Promise<HttpReply>, url: URL): Promise<HttpReply> {
  try {
    return await fn();
  } catch (e) {
    throw new DeviceCaError('ca-unavailable', `cannot reach ${url.origin}: ${(e as Error).message}`, { cause: e });
  }
}

/** originOf: the origin of the EST URL agent.json recorded; the command routes are on the same HTTPS listener. */
function originOf(est: string): URL {
  let u: URL;
  try {
    u = new URL(est);
  } catch {
    throw new DeviceCaError('bad-request', `${FILES.state}: the EST URL is not a URL: ${est}`);
  }
  if (u.protocol !== 'https:') throw new DeviceCaError('bad-request', `${FILES.state}: the EST URL must be https:// (the device authenticates with its certificate), got ${u.protocol}`);
  return new URL(u.origin);
}

function readFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new DeviceCaError('bad-request', `${what} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function readText(file: string, what: string): string {
  return readFile(file, what).toString('latin1');
}
