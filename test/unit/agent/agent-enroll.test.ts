import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { agentEnroll } from '../../../src/agent/agent-enroll';

/**
 * agentEnroll's refusals that come before any TPM or network work: nothing is written to --out (the
 * interop test test/interop/tpm-agent.test.ts covers the refusals of a real TPM and server).
 */
const TRUST = path.join(__dirname, '../../fixtures/tpm/ek-root.pem');
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-agent-unit-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const enroll = (o: { tcti?: string; trust?: string; est?: string; ekCert?: string }) =>
  agentEnroll({
    est: o.est ?? 'https://127.0.0.1:1/.well-known/est/tpm',
    device: 'dev-1',
    secret: 's',
    trust: o.trust ?? TRUST,
    out: path.join(dir, 'out'),
    ekCert: o.ekCert,
    akHandle: 0x81018000,
    keySlots: [0x81018001, 0x81018002],
    tcti: o.tcti ?? 'swtpm:host=127.0.0.1,port=1',
  });

describe('agentEnroll before the TPM', () => {
  it('a TCTI it cannot read: refused naming it, no work directory left behind', async () => {
    // the agent's work directory would go to os.tmpdir(): a private one here, to see that none was made
    const tmpdir = fs.mkdtempSync(path.join(dir, 'tmp-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmpdir;
    try {
      await expect(enroll({ tcti: 'swtpm:host=127.0.0.1,port=99999' })).rejects.toThrow('TCTI "swtpm:host=127.0.0.1,port=99999": "port=99999" is not host=<name> or port=<1..65535>');
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    expect(fs.readdirSync(tmpdir)).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
  });

  it('a device TCTI whose device is not there: "unreachable", naming the TCTI, nothing written', async () => {
    const missing = path.join(dir, 'tpmrm9');
    await expect(enroll({ tcti: `device:${missing}` })).rejects.toThrow(`TPM unreachable through TCTI "device:${missing}"`);
    expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
  });

  it('a trust file that is missing or holds no certificate', async () => {
    await expect(enroll({ trust: path.join(dir, 'nope.pem') })).rejects.toThrow(`--trust ${path.join(dir, 'nope.pem')}: cannot read it (ENOENT)`);
    fs.writeFileSync(path.join(dir, 'empty.pem'), 'not a certificate\n');
    await expect(enroll({ trust: path.join(dir, 'empty.pem') })).rejects.toThrow('no PEM certificate in it');
    expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
  });

  it('an --ek-cert that is not a certificate, and an EST URL that is not https', async () => {
    fs.writeFileSync(path.join(dir, 'ek.der'), Buffer.from('3003020101', 'hex'));
    await expect(enroll({ ekCert: path.join(dir, 'ek.der') })).rejects.toThrow(`--ek-cert ${path.join(dir, 'ek.der')}: not a DER or PEM certificate`);
    await expect(enroll({ est: 'http://ca.example/.well-known/est/tpm' })).rejects.toThrow('--est must be an https:// URL');
    await expect(enroll({ est: 'not a url' })).rejects.toThrow('--est: not a URL: not a url');
  });
});
