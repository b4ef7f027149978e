import { Pkcs11KeyBackend } from '../../../src/keys/pkcs11/pkcs11-key-backend';
import { KeyHealth } from '../../../src/keys/key-health';
import { SoftHsm, createSoftHsm } from '../../helpers/softhsm';

/** Pkcs11KeyBackend.probe on a real SoftHSM token: the key is found without signing; a missing key is named. */
describe('Pkcs11KeyBackend.probe (SoftHSM)', () => {
  let hsm: SoftHsm;
  let backend: Pkcs11KeyBackend;
  beforeAll(async () => {
    hsm = createSoftHsm({ labels: ['ca'] });
    backend = await new Pkcs11KeyBackend({ module: hsm.module, token: 'ca', pin: hsm.pin, sessionPoolSize: 1, signerThreads: 1 }).open();
  });
  afterAll(async () => {
    await backend.close();
    hsm.cleanup();
  });

  it('healthy for the issuing key on the token; unhealthy, naming the ref, for a key that is not there', async () => {
    const key = await backend.generate('issuing', 'ecdsa-p256', 'issuing');
    await expect(new KeyHealth({ backend, refs: () => [key.ref] }).check()).resolves.toBeUndefined();
    const missing = 'pkcs11:token=ca;id=%01%02;type=private';
    await expect(new KeyHealth({ backend, refs: () => [key.ref, missing] }).check()).rejects.toMatchObject({
      code: 'key-backend',
      message: expect.stringContaining(`no private key matching ${missing}`),
    });
  });
});
