import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KeyHealth } from '../../../src/keys/key-health';
import { SoftwareKeyBackend } from '../../../src/keys/software-key-backend';

/** KeyHealth: the CA key's usability without signing, cached, and bounded in time for a hung token. */
describe('KeyHealth', () => {
  it('a software key file: healthy while readable, unhealthy with the file named once it is gone', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'key-health-'));
    try {
      const backend = new SoftwareKeyBackend(dir);
      const key = await backend.generate('issuing', 'ecdsa-p256', 'issuing');
      let t = 0;
      const health = new KeyHealth({ backend, refs: () => [key.ref], ttlMs: 1000, now: () => t });
      await expect(health.check()).resolves.toBeUndefined();
      fs.rmSync(key.ref);
      // cached: the file's loss shows after the ttl
      await expect(health.check()).resolves.toBeUndefined();
      t = 1000;
      await expect(health.check()).rejects.toMatchObject({ code: 'key-backend', message: `key file ${key.ref} is not readable (ENOENT)` });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('probes once per ttl whatever the number of callers', async () => {
    let probes = 0;
    let t = 0;
    const health = new KeyHealth({ backend: { probe: async () => void probes++ }, refs: () => ['a', 'b'], ttlMs: 5000, now: () => t });
    await Promise.all([health.check(), health.check(), health.check()]);
    await health.check();
    expect(probes).toBe(2); // one probe round: both refs
    t = 5000;
    await health.check();
    expect(probes).toBe(4);
  });

  it('a failing probe: rejects with the backend reason; a thrown non-DeviceCaError becomes key-backend', async () => {
    const health = new KeyHealth({
      backend: {
        probe: async () => {
          throw new Error('CKR_DEVICE_REMOVED');
        },
      },
      refs: () => ['pkcs11:token=ca;object=issuing'],
    });
    await expect(health.check()).rejects.toMatchObject({ code: 'key-backend', message: 'key backend probe failed' });
  });

  it('a hung token: unhealthy after the timeout, and no second probe while the first still hangs', async () => {
    let probes = 0;
    let release!: () => void;
    let t = 0;
    const health = new KeyHealth({
      backend: {
        probe: () => {
          // the first probe hangs until released; later ones answer
          if (probes++ > 0) return Promise.resolve();
          return new Promise<void>((r) => (release = r));
        },
      },
      refs: () => ['pkcs11:token=ca;object=issuing'],
      timeoutMs: 20,
      ttlMs: 10,
      now: () => t,
    });
    await expect(health.check()).rejects.toMatchObject({ code: 'key-backend', message: 'key backend did not answer within 20 ms' });
    t = 10;
    await expect(health.check()).rejects.toMatchObject({ code: 'key-backend', message: 'key backend probe still running (the token does not answer)' });
    expect(probes).toBe(1);
    release();
    await new Promise((r) => setImmediate(r));
    t = 20;
    await expect(health.check()).resolves.toBeUndefined();
    expect(probes).toBe(2);
  });
});
