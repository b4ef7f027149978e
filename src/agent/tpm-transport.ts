import * as fs from 'node:fs';
import * as net from 'node:net';
import { DeviceCaError } from '../errors/device-ca-error';
import { TctiConfig } from './tcti-config';

/**
 * TpmTransport: one open connection to a TPM that carries command bytes and returns response bytes, so
 * a sequence of commands (a policy session started, satisfied and used) runs on ONE connection: the
 * kernel resource manager (/dev/tpmrm0) flushes a connection's sessions when it closes, which is why
 * tpm2-tools, one process per command, cannot keep an EK policy session there.
 */
export interface TpmTransport {
  send(command: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

/** MAX_RESPONSE: TPM responses are at most 4096 bytes (TPM 2.0 Part 2 MAX_RESPONSE_SIZE; the Linux driver's buffer). */
const MAX_RESPONSE = 4096;
/** TIMEOUT_MS: a slow TPM derives an RSA primary key from its seed in tens of seconds (TCG PC Client PTP: long duration). */
const TIMEOUT_MS = 120_000;
/** TPM_SEND_COMMAND, TPM_SESSION_END: the Microsoft simulator's command-port framing (tpm2-tss tcti-mssim). */
const TPM_SEND_COMMAND = 8;
const TPM_SESSION_END = 20;

/** unreachable: the message tpm-tool-error.ts gives when tpm2-tools cannot reach the TPM, with the reason. */
const unreachable = (tcti: string, why: string): DeviceCaError => new DeviceCaError('key-backend', `TPM unreachable through TCTI "${tcti}" (set TPM2TOOLS_TCTI, e.g. device:/dev/tpmrm0): ${why}`);

/** openTpmTransport connects to the TPM a TCTI names; `other` TCTIs (tabrmd, ...) are not spoken here. */
export async function openTpmTransport(cfg: TctiConfig, tcti: string): Promise<TpmTransport> {
  if (cfg.kind === 'device') return DeviceTransport.open(cfg.path, tcti);
  if (cfg.kind === 'swtpm' || cfg.kind === 'mssim') return SocketTransport.open(cfg.host, cfg.port, cfg.kind === 'mssim', tcti);
  throw new DeviceCaError('internal', `TCTI "${tcti}" is not spoken in-process`);
}

/**
 * DeviceTransport: a TPM character device (/dev/tpmrm0, /dev/tpm0): write one whole command, read one
 * whole response (the Linux TPM driver's contract: one write, then one read returns the response).
 */
class DeviceTransport implements TpmTransport {
  private constructor(
    private readonly fh: fs.promises.FileHandle,
    private readonly tcti: string,
  ) {}

  static async open(path: string, tcti: string): Promise<DeviceTransport> {
    try {
      return new DeviceTransport(await fs.promises.open(path, 'r+'), tcti);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const hint = code === 'EACCES' ? ' (the agent needs read-write access: run it as root or in the group that owns the device, often "tss")' : '';
      throw unreachable(tcti, `cannot open ${path}: ${code ?? (e as Error).message}${hint}`);
    }
  }

  async send(command: Buffer): Promise<Buffer> {
    try {
      await this.fh.write(command, 0, command.length);
    } catch (e) {
      throw new DeviceCaError('key-backend', `TPM I/O through TCTI "${this.tcti}" failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    // the TPM driver returns the whole response in one read; a device that hands it out in pieces (a
    // pseudo-terminal in front of a simulator) is read on until the header's size is reached
    const buf = Buffer.alloc(MAX_RESPONSE);
    let have = 0;
    while (have < 10 || have < Math.min(buf.readUInt32BE(2), MAX_RESPONSE)) {
      let n: number;
      try {
        n = (await this.fh.read(buf, have, buf.length - have, null)).bytesRead;
      } catch (e) {
        throw new DeviceCaError('key-backend', `TPM I/O through TCTI "${this.tcti}" failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      if (n === 0) break; // end of file: parseResponse names what is missing
      have += n;
    }
    return Buffer.from(buf.subarray(0, have));
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * SocketTransport: the command port of swtpm (raw TPM command bytes, as tpm2-tss tcti-swtpm sends them)
 * or of the Microsoft simulator (mssim: TPM_SEND_COMMAND, locality, size, command; the reply is size,
 * response, a 4-byte acknowledgement). swtpm serves one connection at a time: close it before a tool runs.
 */
class SocketTransport implements TpmTransport {
  private pending = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly mssim: boolean,
    private readonly tcti: string,
  ) {
    socket.on('data', (d: Buffer) => {
      this.pending = Buffer.concat([this.pending, d]);
      this.waiter?.();
    });
    socket.on('error', (e) => {
      this.failure = e;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.failure ??= new Error('the TPM closed the connection');
      this.waiter?.();
    });
  }

  static open(host: string, port: number, mssim: boolean, tcti: string): Promise<SocketTransport> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setTimeout(TIMEOUT_MS);
      const fail = (e: Error): void => {
        socket.destroy();
        reject(unreachable(tcti, `cannot connect to ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      };
      socket.once('error', fail);
      socket.once('timeout', () => fail(new Error('timeout')));
      socket.once('connect', () => {
        socket.off('error', fail);
        socket.on('timeout', () => socket.destroy(new Error(`no reply in ${TIMEOUT_MS / 1000} s`)));
        resolve(new SocketTransport(socket, mssim, tcti));
      });
    });
  }

  async send(command: Buffer): Promise<Buffer> {
    this.pending = Buffer.alloc(0);
    if (this.mssim) {
      const h = Buffer.alloc(9);
      h.writeUInt32BE(TPM_SEND_COMMAND, 0);
      h.writeUInt8(0, 4); // locality 0
      h.writeUInt32BE(command.length, 5);
      this.socket.write(Buffer.concat([h, command]));
      const size = (await this.take(4)).readUInt32BE(0);
      if (size < 10 || size > MAX_RESPONSE) throw new DeviceCaError('key-backend', `TPM through TCTI "${this.tcti}": response size ${size} out of range`);
      const rsp = await this.take(size);
      await this.take(4); // the acknowledgement (0)
      return rsp;
    }
    this.socket.write(command);
    const head = await this.take(10);
    const size = head.readUInt32BE(2);
    if (size < 10 || size > MAX_RESPONSE) throw new DeviceCaError('key-backend', `TPM through TCTI "${this.tcti}": response size ${size} out of range`);
    return Buffer.concat([head, await this.take(size - 10)]);
  }

  /** take waits for the next `n` bytes of the reply. */
  private async take(n: number): Promise<Buffer> {
    while (this.pending.length < n) {
      if (this.failure) throw new DeviceCaError('key-backend', `TPM through TCTI "${this.tcti}": ${this.failure.message} (after ${this.pending.length} of ${n} bytes)`);
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
    const out = this.pending.subarray(0, n);
    this.pending = this.pending.subarray(n);
    return Buffer.from(out);
  }

  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    if (this.mssim) {
      const end = Buffer.alloc(4);
      end.writeUInt32BE(TPM_SESSION_END, 0);
      this.socket.write(end);
    }
    await new Promise<void>((r) => this.socket.end(r));
    this.socket.destroy();
  }
}
