import { loadConfig } from '../../../src/config/load-config';
import { buildTpmAttestation } from '../../../src/main';
import { Store } from '../../../src/store/store';

// buildTpmAttestation on a store without attestation state (Redis today): the built-in "tpm" profile
// must not stop the default config from starting; a profile the operator turned attestation on for must.
describe('buildTpmAttestation on a store that keeps no attestation state', () => {
  const noAttestation = {} as Store;
  const cfg = (overrides: Record<string, unknown>) => loadConfig({ env: {}, overrides: { 'store.type': 'redis', 'store.url': 'redis://127.0.0.1:1', ...overrides } });

  it('the default config (built-in tpm profile untouched) starts without TPM attestation', () => {
    expect(buildTpmAttestation(cfg({}), noAttestation)).toBeUndefined();
  });

  it('a changed tpm profile, or another profile with attestation on, is a config error naming it', () => {
    expect(() => buildTpmAttestation(cfg({ profiles: { default: {}, tpm: { attestation: 'required', serverKeyGen: false, validity: '30d' } } }), noAttestation)).toThrow(
      expect.objectContaining({ code: 'config', message: expect.stringContaining('profiles.tpm.attestation') }),
    );
    expect(() => buildTpmAttestation(cfg({ profiles: { default: { attestation: 'optional' }, tpm: { attestation: 'required', serverKeyGen: false } } }), noAttestation)).toThrow(
      expect.objectContaining({ code: 'config', message: expect.stringContaining('profiles.default.attestation') }),
    );
  });
});
