import { scepHint, scepUrls } from '../../../src/cli/scep-hint';
import { loadConfig } from '../../../src/config/load-config';

/** scepHint: what `devices add` tells the operator about SCEP, from the configuration alone. */
const cfg = (overrides: Record<string, unknown>) => loadConfig({ env: { DEVICE_CA_DATA: '/nonexistent' }, overrides: { publicUrl: 'http://ca.example.test:8080', ...overrides } });

describe('scepHint / scepUrls', () => {
  it('SCEP off (the default): nothing, so `devices add` prints the secret alone', () => {
    expect(scepUrls(cfg({}), null)).toEqual([]);
    expect(scepHint(cfg({}), 'dev-1', null)).toEqual([]);
  });

  it('SCEP on: the challengePassword recipe with every path serving the device profile', () => {
    const c = cfg({ 'scep.enabled': true, profiles: { default: {}, cams: {} }, 'scep.paths': { default: { profile: 'default' }, cams: { profile: 'cams' } } });
    expect(scepUrls(c, null)).toEqual(['http://ca.example.test:8080/scep', 'http://ca.example.test:8080/scep/cams']);
    expect(scepUrls(c, 'cams')).toEqual(['http://ca.example.test:8080/scep/cams']);
    expect(scepHint(c, 'cam-7', 'cams')).toEqual([
      'SCEP: give the secret as challengePassword in a CSR with CN=cam-7, to http://ca.example.test:8080/scep/cams',
      'EST: give it as HTTP Basic cam-7:<secret>',
    ]);
  });
});
