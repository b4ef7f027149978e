import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { ConsoleOverview } from '../../../src/ra/console-overview';
import { DeviceLifecycle, OPERATOR } from '../../../src/ra/device-lifecycle';
import { RaHarness, makeRaHarness } from './ra-harness';

/** ConsoleOverview's health cards: the store and the key backend, each healthy or with its short reason. */
describe('ConsoleOverview health', () => {
  let h: RaHarness;
  beforeAll(async () => {
    h = await makeRaHarness();
  });
  afterAll(() => h.close());

  const overview = (keyHealth: () => Promise<void>, storeHealth: () => Promise<void> = async () => undefined) =>
    new ConsoleOverview({
      store: h.store,
      lifecycle: new DeviceLifecycle(h.cfg, h.store),
      ra: h.ra,
      issuer: 'device-ca-issuing',
      crlShards: 1,
      ocspResponderCertificate: () => null,
      storeHealth,
      keyHealth,
    });

  it('both healthy', async () => {
    const o = await overview(async () => undefined).overview(OPERATOR);
    expect(o.store).toEqual({ healthy: true, problem: null });
    expect(o.keyBackend).toEqual({ healthy: true, problem: null });
  });

  it('a failing key probe: the key backend card carries its reason, the store stays healthy', async () => {
    const o = await overview(async () => {
      throw new DeviceCaError('key-backend', 'key backend did not answer within 2000 ms', { detail: 'slot 0 secret detail' });
    }).overview(OPERATOR);
    expect(o.keyBackend).toEqual({ healthy: false, problem: 'key backend did not answer within 2000 ms' });
    expect(o.store).toEqual({ healthy: true, problem: null });
  });

  it('an error that is not a DeviceCaError is shown as a fixed text, never its message', async () => {
    const o = await overview(async () => {
      throw new Error('CKR_GENERAL_ERROR at 0xdeadbeef');
    }).overview(OPERATOR);
    expect(o.keyBackend).toEqual({ healthy: false, problem: 'key backend probe failed' });
  });

  it('an owner scope sees the key backend health too', async () => {
    const o = await overview(async () => {
      throw new DeviceCaError('key-backend', 'key file /data/keys/issuing.key.pem is not readable (ENOENT)');
    }).overview({ kind: 'owner', owner: 'acme' });
    expect(o.keyBackend.healthy).toBe(false);
  });
});
