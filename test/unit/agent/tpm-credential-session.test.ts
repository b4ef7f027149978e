import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseTcti } from '../../../src/agent/tcti-config';
import {
  activateCredentialCommand,
  akTemplate,
  createCommand,
  createPrimaryCommand,
  ekTemplate,
  evictControlCommand,
  flushContextCommand,
  loadCommand,
  parseResponse,
  policySecretCommand,
  TPM_RH_ENDORSEMENT,
} from '../../../src/agent/tpm-commands';
import { activateCredentialOnce, EkSession } from '../../../src/agent/tpm-credential-session';
import { openTpmTransport, TpmTransport } from '../../../src/agent/tpm-transport';
import { DeviceCaError } from '../../../src/errors/device-ca-error';

/**
 * The credential activation the agent speaks itself over ONE TPM connection (tpm-credential-session.ts),
 * against a scripted TPM: the command sequence, what is flushed when a step fails, resubmission on
 * TPM_RC_RETRY; the socket framings (swtpm raw, mssim) against a scripted server, including a TPM that
 * hangs up mid-response; and TCTI strings read as tpm2-tools reads them.
 */
const EK = 0x80000000;
const SESSION = 0x03000000;
const AK = 0x81018000;
const EK_PUBLIC = Buffer.concat([Buffer.from('000c0001000b', 'hex'), Buffer.alloc(8, 7)]);
const CHALLENGE = { credentialBlob: Buffer.from('0002aabb', 'hex'), secret: Buffer.from('0001cc', 'hex') };

/** response: a TPM response with the given tag, code, handles and (for sessions) parameters plus an empty auth area. */
function response(rc: number, handles: number[] = [], params?: Buffer): Buffer {
  const parts: Buffer[] = handles.map((h) => u32(h));
  if (params) parts.push(u32(params.length), params, Buffer.from('0000000000', 'hex'));
  const body = Buffer.concat(parts);
  const hdr = Buffer.alloc(10);
  hdr.writeUInt16BE(params ? 0x8002 : 0x8001, 0);
  hdr.writeUInt32BE(10 + body.length, 2);
  hdr.writeUInt32BE(rc, 6);
  return Buffer.concat([hdr, body]);
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const cc = (cmd: Buffer): number => cmd.readUInt32BE(6);

/** ScriptedTpm answers each command code from a queue of responses and records every command it got. */
class ScriptedTpm implements TpmTransport {
  readonly sent: Buffer[] = [];
  constructor(private readonly answers: Map<number, Buffer[]>) {}
  send(command: Buffer): Promise<Buffer> {
    this.sent.push(command);
    const q = this.answers.get(cc(command));
    if (!q || q.length === 0) throw new Error(`unscripted command 0x${cc(command).toString(16)}`);
    return Promise.resolve(q.length > 1 ? q.shift()! : q[0]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const createPrimaryOk = (pub = EK_PUBLIC): Buffer => response(0, [EK], Buffer.concat([pub, Buffer.from('0000' + '0000' + '8021' + '40000007' + '0000' + '0000', 'hex')]));
const ok = (extra: Partial<Record<number, Buffer[]>> = {}): Map<number, Buffer[]> =>
  new Map<number, Buffer[]>([
    [0x131, [createPrimaryOk()]],
    [0x176, [response(0, [SESSION], undefined).subarray(0)]],
    [0x151, [response(0, [], Buffer.from('0000' + '80210000000000000000', 'hex'))]],
    [0x147, [response(0, [], Buffer.from('0004deadbeef', 'hex'))]],
    [0x165, [response(0)]],
    ...Object.entries(extra).map(([k, v]) => [Number(k), v!] as [number, Buffer[]]),
  ]);

describe('activateCredentialOnce', () => {
  it('CreatePrimary(EK), StartAuthSession, PolicySecret, ActivateCredential on one connection; the EK flushed, the consumed session not', async () => {
    const tpm = new ScriptedTpm(ok());
    const secret = await activateCredentialOnce(tpm, { akHandle: AK, ekPublic: EK_PUBLIC, challenge: CHALLENGE });
    expect(secret.toString('hex')).toBe('deadbeef');
    expect(tpm.sent.map(cc)).toEqual([0x131, 0x176, 0x151, 0x147, 0x165]);
    expect(tpm.sent[0]).toEqual(createPrimaryCommand(TPM_RH_ENDORSEMENT, ekTemplate('rsa')));
    expect(tpm.sent[2]).toEqual(policySecretCommand(TPM_RH_ENDORSEMENT, SESSION));
    // ActivateCredential names the AK and the EK the TPM returned, and the session it started (its nonce is random)
    const nonce = tpm.sent[3].subarray(10 + 8 + 4 + 9 + 4 + 2, 10 + 8 + 4 + 9 + 4 + 2 + 32);
    expect(tpm.sent[3]).toEqual(activateCredentialCommand(AK, EK, { handle: SESSION, nonceCaller: nonce }, CHALLENGE.credentialBlob, CHALLENGE.secret));
    expect(tpm.sent[4]).toEqual(flushContextCommand(EK));
  });

  it('TPM_RC_RETRY (swtpm after start-up) is resubmitted, byte for byte', async () => {
    const tpm = new ScriptedTpm(ok({ 0x147: [response(0x922), response(0, [], Buffer.from('0002beef', 'hex'))] }));
    expect((await activateCredentialOnce(tpm, { akHandle: AK, ekPublic: EK_PUBLIC, challenge: CHALLENGE })).toString('hex')).toBe('beef');
    const activations = tpm.sent.filter((c) => cc(c) === 0x147);
    expect(activations).toHaveLength(2);
    expect(activations[1]).toEqual(activations[0]);
  });

  it('a TPM that keeps answering TPM_RC_RETRY: an error after five submissions, session and EK flushed', async () => {
    const tpm = new ScriptedTpm(ok({ 0x147: [response(0x922)] }));
    await expect(activateCredentialOnce(tpm, { akHandle: AK, ekPublic: EK_PUBLIC, challenge: CHALLENGE })).rejects.toThrow('TPM2_ActivateCredential failed: TPM response code 0x922');
    expect(tpm.sent.filter((c) => cc(c) === 0x147)).toHaveLength(5);
    expect(tpm.sent.slice(-2)).toEqual([flushContextCommand(SESSION), flushContextCommand(EK)]);
  });

  it('a wrong credential (the TPM refuses it): the error names the command, the session and the EK are flushed', async () => {
    const tpm = new ScriptedTpm(ok({ 0x147: [response(0x9a1)] }));
    await expect(activateCredentialOnce(tpm, { akHandle: AK, ekPublic: EK_PUBLIC, challenge: CHALLENGE })).rejects.toThrow('TPM2_ActivateCredential failed: TPM response code 0x9a1');
    expect(tpm.sent.slice(-2)).toEqual([flushContextCommand(SESSION), flushContextCommand(EK)]);
  });

  it('the TPM derives another EK than the registered one: refused before any session is started, the EK flushed', async () => {
    const other = Buffer.concat([Buffer.from('000c0001000b', 'hex'), Buffer.alloc(8, 9)]);
    const tpm = new ScriptedTpm(ok({ 0x131: [createPrimaryOk(other)] }));
    await expect(activateCredentialOnce(tpm, { akHandle: AK, ekPublic: EK_PUBLIC, challenge: CHALLENGE })).rejects.toThrow(
      'the EK this TPM derives from the TCG default template is not the EK that was registered',
    );
    expect(tpm.sent.map(cc)).toEqual([0x131, 0x165]);
  });

  it('lockout during PolicySecret: the lockout advice', async () => {
    const tpm = new ScriptedTpm(ok({ 0x151: [response(0x921)] }));
    await expect(activateCredentialOnce(tpm, { akHandle: AK, ekPublic: EK_PUBLIC, challenge: CHALLENGE })).rejects.toThrow(
      /^the TPM is in dictionary-attack lockout \(TPM_RC_LOCKOUT from TPM2_PolicySecret\)/,
    );
  });

  it('an H-3 EK (userWithAuth): ActivateCredential with the EK password, no policy session', async () => {
    const h3 = Buffer.concat([Buffer.from('000c0023000c', 'hex'), Buffer.alloc(8, 3)]);
    const tpm = new ScriptedTpm(ok({ 0x131: [createPrimaryOk(h3)] }));
    await activateCredentialOnce(tpm, { akHandle: AK, ekPublic: h3, challenge: CHALLENGE });
    expect(tpm.sent.map(cc)).toEqual([0x131, 0x147, 0x165]);
    expect(tpm.sent[0]).toEqual(createPrimaryCommand(TPM_RH_ENDORSEMENT, ekTemplate('ecc384')));
    expect(tpm.sent[1]).toEqual(activateCredentialCommand(AK, EK, 'password', CHALLENGE.credentialBlob, CHALLENGE.secret));
  });
});

describe('EkSession: the EK derived once for AK creation and activation (agent enroll)', () => {
  const AK_TRANSIENT = 0x80000001;
  const PRIVATE = Buffer.from('0003010203', 'hex');
  const AK_PUBLIC = Buffer.concat([Buffer.from('00080001000b', 'hex'), Buffer.alloc(4, 0xa5)]);
  const created = response(0, [], Buffer.concat([PRIVATE, AK_PUBLIC, Buffer.from('0000' + '0000' + '8021' + '40000007' + '0000', 'hex')]));
  const loaded = response(0, [AK_TRANSIENT], Buffer.from('0002000b', 'hex'));
  const withAk = (extra: Partial<Record<number, Buffer[]>> = {}): Map<number, Buffer[]> => ok({ 0x153: [created], 0x157: [loaded], 0x120: [response(0, [], Buffer.alloc(0))], ...extra });

  it('one CreatePrimary: Create and Load of the AK under it, EvictControl to the handle, then ActivateCredential with the same EK; a fresh policy session for each EK use', async () => {
    const tpm = new ScriptedTpm(withAk());
    const ek = await EkSession.start(tpm, 'rsa');
    expect(ek.ekPublic).toEqual(EK_PUBLIC);
    expect(await ek.createAk(AK)).toEqual(AK_PUBLIC);
    expect((await ek.activateCredential(AK, CHALLENGE)).toString('hex')).toBe('deadbeef');
    await ek.close();
    expect(tpm.sent.map(cc)).toEqual([0x131, 0x176, 0x151, 0x153, 0x176, 0x151, 0x157, 0x120, 0x165, 0x176, 0x151, 0x147, 0x165]);
    expect(tpm.sent.filter((c) => cc(c) === 0x131)).toHaveLength(1);
    const nonceOf = (c: Buffer): Buffer => c.subarray(10 + 4 + 4 + 4 + 2, 10 + 4 + 4 + 4 + 2 + 32);
    expect(tpm.sent[3]).toEqual(createCommand(EK, { handle: SESSION, nonceCaller: nonceOf(tpm.sent[3]) }, akTemplate()));
    expect(tpm.sent[6]).toEqual(loadCommand(EK, { handle: SESSION, nonceCaller: nonceOf(tpm.sent[6]) }, PRIVATE, AK_PUBLIC));
    expect(tpm.sent[7]).toEqual(evictControlCommand(AK_TRANSIENT, AK));
    expect(tpm.sent[8]).toEqual(flushContextCommand(AK_TRANSIENT));
    expect(tpm.sent[12]).toEqual(flushContextCommand(EK));
  });

  it('the AK template is what tpm2_createak -G rsa -g sha256 -s rsassa makes: restricted RSA-2048 signing key bound to the TPM', () => {
    // type RSA, nameAlg SHA-256, fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign, empty policy;
    // symmetric NULL, scheme RSASSA/SHA-256, 2048 bits, default exponent, empty unique
    expect(akTemplate().toString('hex')).toBe('0001' + '000b' + '00050072' + '0000' + '0010' + '0014' + '000b' + '0800' + '00000000' + '0000');
  });

  it('EvictControl refused (the handle is taken): the loaded AK is flushed, the EK stays until close', async () => {
    const tpm = new ScriptedTpm(withAk({ 0x120: [response(0x14c)] }));
    const ek = await EkSession.start(tpm, 'rsa');
    await expect(ek.createAk(AK)).rejects.toThrow('TPM2_EvictControl failed: TPM response code 0x14c');
    expect(tpm.sent.slice(-1)).toEqual([flushContextCommand(AK_TRANSIENT)]);
    await ek.close();
    await ek.close();
    expect(tpm.sent.slice(-2)).toEqual([flushContextCommand(AK_TRANSIENT), flushContextCommand(EK)]);
  });

  it('TPM2_Create refused: its policy session flushed (the TPM keeps a session a failed command did not consume)', async () => {
    const tpm = new ScriptedTpm(withAk({ 0x153: [response(0x9a2)] }));
    const ek = await EkSession.start(tpm, 'rsa');
    await expect(ek.createAk(AK)).rejects.toThrow(/TPM2_Create failed/);
    expect(tpm.sent.slice(-1)).toEqual([flushContextCommand(SESSION)]);
    await ek.close();
  });

  it('an H-3 EK (userWithAuth): Create, Load and ActivateCredential with its password, no policy sessions', async () => {
    const h3 = Buffer.concat([Buffer.from('000c0023000c', 'hex'), Buffer.alloc(8, 3)]);
    const tpm = new ScriptedTpm(withAk({ 0x131: [createPrimaryOk(h3)] }));
    const ek = await EkSession.start(tpm, 'ecc384');
    await ek.createAk(AK);
    await ek.activateCredential(AK, CHALLENGE);
    await ek.close();
    expect(tpm.sent.map(cc)).toEqual([0x131, 0x153, 0x157, 0x120, 0x165, 0x147, 0x165]);
    expect(tpm.sent[1]).toEqual(createCommand(EK, 'password', akTemplate()));
  });
});

/** fakeTpmServer: a loopback server that answers each connection's first command with `reply` (then maybe hangs up). */
async function fakeTpmServer(reply: (cmd: Buffer, socket: net.Socket) => void): Promise<{ port: number; got: Buffer[]; close: () => Promise<void> }> {
  const got: Buffer[] = [];
  const server = net.createServer((s) => {
    s.once('data', (d: Buffer) => {
      got.push(d);
      reply(d, s);
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, got, close: () => new Promise((r) => server.close(() => r())) };
}

describe('socket transports', () => {
  const GET_RANDOM = Buffer.from('80010000000c0000017b0008', 'hex');
  const RANDOM = Buffer.from('80010000001400000000000801020304050607 08'.replace(/ /g, ''), 'hex');

  it('swtpm: the command as raw bytes; the response read to its size field even when it arrives in pieces', async () => {
    const srv = await fakeTpmServer((_c, s) => {
      s.write(RANDOM.subarray(0, 3));
      setImmediate(() => s.write(RANDOM.subarray(3)));
    });
    const t = await openTpmTransport(parseTcti(`swtpm:host=127.0.0.1,port=${srv.port}`), 'swtpm');
    try {
      expect((await t.send(GET_RANDOM)).toString('hex')).toBe(RANDOM.toString('hex'));
      expect(srv.got[0].toString('hex')).toBe(GET_RANDOM.toString('hex'));
    } finally {
      await t.close();
      await srv.close();
    }
  });

  it('mssim: TPM_SEND_COMMAND, locality 0, size, command; the reply is size, response, acknowledgement', async () => {
    const srv = await fakeTpmServer((_c, s) => s.write(Buffer.concat([u32(RANDOM.length), RANDOM, u32(0)])));
    const t = await openTpmTransport(parseTcti(`mssim:host=127.0.0.1,port=${srv.port}`), 'mssim');
    try {
      expect((await t.send(GET_RANDOM)).toString('hex')).toBe(RANDOM.toString('hex'));
      expect(srv.got[0].toString('hex')).toBe('00000008' + '00' + '0000000c' + GET_RANDOM.toString('hex'));
    } finally {
      await t.close();
      await srv.close();
    }
  });

  it.each([
    ['hangs up mid-response', (s: net.Socket) => s.end(RANDOM.subarray(0, 12)), /the TPM closed the connection \(after 2 of 10 bytes\)$/],
    ['sends a size field over 4096', (s: net.Socket) => s.write(Buffer.from('8001ffffffff00000000', 'hex')), /response size 4294967295 out of range$/],
    ['sends a size field under the header', (s: net.Socket) => s.write(Buffer.from('80010000000400000000', 'hex')), /response size 4 out of range$/],
  ])('a TPM that %s: a key-backend error naming the TCTI', async (_what, misbehave, message) => {
    const srv = await fakeTpmServer((_c, s) => misbehave(s));
    const tcti = `swtpm:host=127.0.0.1,port=${srv.port}`;
    const t = await openTpmTransport(parseTcti(tcti), tcti);
    try {
      const err = await t.send(GET_RANDOM).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DeviceCaError);
      expect((err as DeviceCaError).code).toBe('key-backend');
      expect((err as DeviceCaError).message).toMatch(new RegExp(`^TPM through TCTI "${tcti}": `));
      expect((err as DeviceCaError).message).toMatch(message);
    } finally {
      await t.close();
      await srv.close();
    }
  });
});

describe('device transport', () => {
  it('a device path that does not exist: unreachable, naming the TCTI and the errno', async () => {
    const missing = path.join(os.tmpdir(), `device-ca-no-tpm-${process.pid}`);
    await expect(openTpmTransport(parseTcti(`device:${missing}`), `device:${missing}`)).rejects.toThrow(
      `TPM unreachable through TCTI "device:${missing}" (set TPM2TOOLS_TCTI, e.g. device:/dev/tpmrm0): cannot open ${missing}: ENOENT`,
    );
  });

  it('a file that answers nothing (end of file after the command): an empty reply, which parseResponse calls short', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-tpmdev-'));
    try {
      const file = path.join(dir, 'tpm0');
      fs.writeFileSync(file, '');
      const t = await openTpmTransport(parseTcti(`device:${file}`), `device:${file}`);
      try {
        const rsp = await t.send(flushContextCommand(0x80000000));
        expect(rsp.length).toBe(0);
        expect(() => parseResponse('TPM2_FlushContext', rsp, 0)).toThrow('TPM2_FlushContext: short response from the TPM (0 bytes)');
        expect(fs.readFileSync(file).toString('hex')).toBe(flushContextCommand(0x80000000).toString('hex'));
      } finally {
        await t.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseTcti (as tpm2-tools reads TPM2TOOLS_TCTI)', () => {
  it.each([
    ['device:/dev/tpmrm0', { kind: 'device', path: '/dev/tpmrm0' }],
    ['device', { kind: 'device', path: '/dev/tpm0' }],
    ['libtss2-tcti-device.so.0:/dev/tpm0', { kind: 'device', path: '/dev/tpm0' }],
    ['swtpm:host=127.0.0.1,port=2321', { kind: 'swtpm', host: '127.0.0.1', port: 2321 }],
    ['swtpm:port=5000', { kind: 'swtpm', host: 'localhost', port: 5000 }],
    ['swtpm', { kind: 'swtpm', host: 'localhost', port: 2321 }],
    ['tcti-mssim:host=::1,port=2321', { kind: 'mssim', host: '::1', port: 2321 }],
    ['tabrmd:bus_name=com.intel.tss2.Tabrmd,bus_type=session', { kind: 'other', name: 'tabrmd', conf: 'bus_name=com.intel.tss2.Tabrmd,bus_type=session' }],
    ['libtss2-tcti-tabrmd.so.0', { kind: 'other', name: 'tabrmd', conf: '' }],
  ])('%s', (tcti, expected) => {
    expect(parseTcti(tcti)).toEqual(expected);
  });

  it.each(['swtpm:port=0', 'swtpm:port=70000', 'swtpm:port=abc', 'mssim:hots=x', 'swtpm:host='])('%s: a bad-request error naming the part', (tcti) => {
    expect(() => parseTcti(tcti)).toThrow(new RegExp(`^TCTI "${tcti}": ".*" is not host=<name> or port=<1\\.\\.65535>$`));
  });
});
