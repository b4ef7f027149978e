import * as os from 'node:os';
import * as path from 'node:path';
import { resolveProfiles } from '../../../src/config/enrollment-profiles';
import { envName, loadConfig, publicBaseUrl } from '../../../src/config/load-config';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { makeTmpDir, TmpDir } from '../../helpers/tmp';

/** loadConfig: defaults, environment overrides, strict keys with the path in the message, a frozen result. */

let tmp: TmpDir;
beforeAll(() => {
  tmp = makeTmpDir('device-ca-config-');
});
afterAll(() => tmp.cleanup());

/** configError: the message of the DeviceCaError('config') loadConfig throws; anything else fails the test */
function configError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof DeviceCaError && e.code === 'config') return e.message;
    throw new Error(`expected DeviceCaError('config'), got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
  throw new Error('expected loadConfig to throw');
}

let badFiles = 0;
const yaml = (name: string, text: string): string => tmp.write(name, text);

describe('defaults', () => {
  const cfg = loadConfig({ env: {} });

  it.each([
    ['https.port', cfg.https.port, 8443],
    ['http.port', cfg.http.port, 8080],
    ['https.host', cfg.https.host, '::'],
    ['https.bodyLimit', cfg.https.bodyLimit, 65536],
    ['workers', cfg.workers, 0],
    ['shutdownGrace', cfg.shutdownGrace, 10],
    ['log.level', cfg.log.level, 'info'],
    ['enrollment.secretTtl (7d)', cfg.enrollment.secretTtl, 7 * 86400],
    ['enrollment.authFailureLimit', cfg.enrollment.authFailureLimit, 5],
    ['enrollment.authFailureWindow (15m)', cfg.enrollment.authFailureWindow, 900],
    ['enrollment.authFailureMaxUnknown', cfg.enrollment.authFailureMaxUnknown, 100_000],
    ['enrollment.pendingRetryAfter (60s)', cfg.enrollment.pendingRetryAfter, 60],
    ['enrollment.retryWindow (10m)', cfg.enrollment.retryWindow, 600],
    ['ca.algorithm', cfg.ca.algorithm, 'ecdsa-p256'],
    ['ca.root.validity (7300d)', cfg.ca.root.validity, 7300 * 86400],
    ['ca.issuing.validity (3650d)', cfg.ca.issuing.validity, 3650 * 86400],
    ['crl.shards', cfg.crl.shards, 16],
    ['bootstrap.deviceIdFrom', cfg.bootstrap.deviceIdFrom, 'subject.serialNumber'],
  ])('%s', (_name, got, want) => {
    expect(got).toEqual(want);
  });

  it('has the label "tpm" serving the built-in profile "tpm": attestation required, no server keygen', () => {
    expect(cfg.profiles.tpm).toMatchObject({ attestation: 'required', serverKeyGen: false, auth: ['basic', 'bootstrap-cert'] });
  });

  it('has the label "default" serving the profile "default": every key algorithm, no proof of possession or manual approval', () => {
    expect(cfg.est.labels).toEqual({ default: { profile: 'default', replyBase64: 'single-line' }, tpm: { profile: 'tpm', replyBase64: 'single-line' } });
    expect(Object.keys(cfg.profiles)).toEqual(['default', 'tpm']);
    expect(cfg.profiles.default).toMatchObject({
      auth: ['basic', 'bootstrap-cert'],
      proofOfPossession: false,
      manualApproval: false,
      allowCsrSans: false,
      serverKeyGen: true,
      validity: 365 * 86400,
      keyAlgorithms: ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'],
    });
  });

  it('resolves dataDir to an absolute path and puts the SQLite file under it', () => {
    expect(cfg.dataDir).toBe(path.resolve('./data'));
    expect(cfg.store.path).toBe(path.join(cfg.dataDir, 'device-ca.sqlite'));
  });

  it('publicBaseUrl defaults to http://localhost:<http port>', () => {
    expect(publicBaseUrl(cfg)).toBe('http://localhost:8080');
    expect(publicBaseUrl(loadConfig({ env: { DEVICE_CA_PUBLIC_URL: 'https://pki.example.net/' } }))).toBe('https://pki.example.net');
  });

  it('ignores DEVICE_CA_* variables of the calling process when env is given', () => {
    const saved = process.env.DEVICE_CA_HTTPS_PORT;
    process.env.DEVICE_CA_HTTPS_PORT = '1234';
    try {
      expect(loadConfig({ env: {} }).https.port).toBe(8443);
    } finally {
      if (saved === undefined) delete process.env.DEVICE_CA_HTTPS_PORT;
      else process.env.DEVICE_CA_HTTPS_PORT = saved;
    }
  });
});

describe('environment overrides', () => {
  it.each([
    ['DEVICE_CA_HTTPS_PORT', '9443', (c: ReturnType<typeof loadConfig>) => c.https.port, 9443],
    ['DEVICE_CA_HTTP_PORT', '9080', (c: ReturnType<typeof loadConfig>) => c.http.port, 9080],
    ['DEVICE_CA_ENROLLMENT_SECRET_TTL', '1d', (c: ReturnType<typeof loadConfig>) => c.enrollment.secretTtl, 86400],
    ['DEVICE_CA_ENROLLMENT_SECRET_TTL', '90', (c: ReturnType<typeof loadConfig>) => c.enrollment.secretTtl, 90],
    ['DEVICE_CA_HTTPS_BODY_LIMIT', '2048', (c: ReturnType<typeof loadConfig>) => c.https.bodyLimit, 2048],
    ['DEVICE_CA_WORKERS', '2', (c: ReturnType<typeof loadConfig>) => c.workers, 2],
    ['DEVICE_CA_LOG_LEVEL', 'warn', (c: ReturnType<typeof loadConfig>) => c.log.level, 'warn'],
    ['DEVICE_CA_ENROLLMENT_AUTH_FAILURE_LIMIT', '3', (c: ReturnType<typeof loadConfig>) => c.enrollment.authFailureLimit, 3],
    ['DEVICE_CA_HTTPS_NAMES', 'ca.example.net, 192.0.2.1', (c: ReturnType<typeof loadConfig>) => c.https.names, ['ca.example.net', '192.0.2.1']],
    ['DEVICE_CA_DATA', '/var/lib/device-ca', (c: ReturnType<typeof loadConfig>) => c.dataDir, '/var/lib/device-ca'],
  ] as const)('%s=%s', (name, value, pick, want) => {
    expect(pick(loadConfig({ env: { [name]: value } }))).toEqual(want);
  });

  it('DEVICE_CA_DATA also moves the SQLite file', () => {
    expect(loadConfig({ env: { DEVICE_CA_DATA: '/srv/ca' } }).store.path).toBe('/srv/ca/device-ca.sqlite');
  });

  it('envName maps a config path to its variable', () => {
    expect(envName(['enrollment', 'secretTtl'])).toBe('DEVICE_CA_ENROLLMENT_SECRET_TTL');
    expect(envName(['https', 'bodyLimit'])).toBe('DEVICE_CA_HTTPS_BODY_LIMIT');
  });

  it('the environment wins over the file; the rest of the file stays', () => {
    const file = yaml('env-over-file.yaml', 'https:\n  port: 7443\n  bodyLimit: 4096\nworkers: 3\n');
    const cfg = loadConfig({ file, env: { DEVICE_CA_HTTPS_PORT: '6443' } });
    expect(cfg.https.port).toBe(6443);
    expect(cfg.https.bodyLimit).toBe(4096);
    expect(cfg.workers).toBe(3);
  });

  it('DEVICE_CA_CONFIG names the file when no file is passed', () => {
    const file = yaml('from-env.yaml', 'workers: 4\n');
    expect(loadConfig({ env: { DEVICE_CA_CONFIG: file } }).workers).toBe(4);
  });

  it('a bad value names the key path and the variable: DEVICE_CA_HTTP_PORT=abc', () => {
    const m = configError(() => loadConfig({ env: { DEVICE_CA_HTTP_PORT: 'abc' } }));
    expect(m).toMatch(/^environment \(DEVICE_CA_HTTP_PORT\): http\.port: /);
  });

  it.each([
    ['DEVICE_CA_HTTPS_PORT', '70000', 'https.port'],
    ['DEVICE_CA_ENROLLMENT_SECRET_TTL', 'soon', 'enrollment.secretTtl'],
    ['DEVICE_CA_LOG_LEVEL', 'loud', 'log.level'],
    ['DEVICE_CA_HTTPS_BODY_LIMIT', '10', 'https.bodyLimit'],
  ])('%s=%s is refused naming %s', (name, value, key) => {
    expect(configError(() => loadConfig({ env: { [name]: value } }))).toContain(`: ${key}: `);
  });
});

describe('the file', () => {
  it('reads labels with their policy inline (the form before profiles): each makes a profile of its name, defaults filling the rest', () => {
    const file = yaml(
      'labels.yaml',
      'est:\n  labels:\n    default: {}\n    strict: { keyAlgorithms: [ecdsa-p256] }\n    pop: { proofOfPossession: true }\n    manual: { manualApproval: true, validity: 30d }\n',
    );
    const { profiles, labels } = resolveProfiles(loadConfig({ file, env: {} }));
    expect([...labels].sort()).toEqual([
      ['default', 'default'],
      ['manual', 'manual'],
      ['pop', 'pop'],
      ['strict', 'strict'],
    ]);
    expect(profiles.get('strict')!.keyAlgorithms).toEqual(['ecdsa-p256']);
    expect(profiles.get('strict')!.auth).toEqual(['basic', 'bootstrap-cert']);
    expect(profiles.get('pop')!.proofOfPossession).toBe(true);
    expect(profiles.get('manual')).toMatchObject({ manualApproval: true, validity: 30 * 86400, proofOfPossession: false });
    expect(profiles.get('default')).toEqual(loadConfig({ env: {} }).profiles.default);
  });

  it('inline policy on the label "default" keeps its meaning (not shadowed by the built-in profile "default")', () => {
    const file = yaml('legacy-default.yaml', 'est:\n  labels:\n    default: { manualApproval: true }\n');
    expect(resolveProfiles(loadConfig({ file, env: {} })).profiles.get('default')!.manualApproval).toBe(true);
  });

  it('reads named profiles and labels that map onto them; a bare label without a profile of its name gets the default policy', () => {
    const file = yaml(
      'profiles.yaml',
      'profiles:\n  default: {}\n  sensors: { keyAlgorithms: [ecdsa-p384], validity: 90d }\nest:\n  labels:\n    default: {}\n    field: { profile: sensors }\n    lab: { profile: sensors }\n    spare: {}\n',
    );
    const { profiles, labels } = resolveProfiles(loadConfig({ file, env: {} }));
    expect(Object.fromEntries(labels)).toEqual({ default: 'default', field: 'sensors', lab: 'sensors', spare: 'spare' });
    expect(profiles.get('sensors')).toMatchObject({ keyAlgorithms: ['ecdsa-p384'], validity: 90 * 86400 });
    expect(profiles.get('spare')).toEqual(profiles.get('default'));
  });

  it('a file with its own profiles but no "tpm" profile and no labels keeps only the label "default"; with its own labels, a label "tpm" without its profile is an error', () => {
    const own = loadConfig({ file: yaml('own-profiles.yaml', 'profiles:\n  default: { manualApproval: true }\n'), env: {} });
    expect(Object.keys(own.est.labels)).toEqual(['default']);
    expect(Object.keys(own.profiles)).toEqual(['default']);
    const bad = yaml('tpm-label-no-profile.yaml', 'profiles:\n  default: {}\nest:\n  labels:\n    tpm: { profile: tpm }\n');
    expect(configError(() => loadConfig({ file: bad, env: {} }))).toContain('est.labels.tpm.profile: no profile "tpm" under profiles');
  });

  it('SCEP is off by default, its path "default" serving the profile "default"; a proofOfPossession profile is only refused once SCEP is enabled', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.scep).toEqual({ enabled: false, paths: { default: { profile: 'default' } } });
    const file = yaml('scep-off.yaml', 'profiles:\n  default: { proofOfPossession: true }\n');
    expect(loadConfig({ file, env: {} }).scep.enabled).toBe(false);
  });

  it('profile and label lookups are Maps: "constructor" or "__proto__" is no profile unless configured', () => {
    const { profiles, labels } = resolveProfiles(loadConfig({ env: {} }));
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      expect(profiles.get(name)).toBeUndefined();
      expect(labels.get(name)).toBeUndefined();
    }
  });

  it.each([
    ['an unknown top-level key', 'tls', 'tls:\n  port: 1\n'],
    ['an unknown nested key', 'https.prot', 'https:\n  prot: 8443\n'],
    ['an unknown label key', 'est.labels.strict.keyAlgorithm', 'est:\n  labels:\n    strict: { keyAlgorithm: [ecdsa-p256] }\n'],
    ['a key algorithm that does not exist', 'est.labels.strict.keyAlgorithms.0', 'est:\n  labels:\n    strict: { keyAlgorithms: [dsa-1024] }\n'],
    ['a bad duration', 'enrollment.secretTtl', 'enrollment:\n  secretTtl: forever\n'],
    ['a wrong type', 'workers', 'workers: many\n'],
    ['a label name outside [a-z0-9-]', 'est.labels.Bad_Name', 'est:\n  labels:\n    Bad_Name: {}\n'],
    ['a label naming a profile that does not exist', 'est.labels.field.profile', 'est:\n  labels:\n    field: { profile: nosuch }\n'],
    ['a label naming a profile and carrying policy too', 'est.labels.field.validity', 'profiles:\n  p: {}\nest:\n  labels:\n    field: { profile: p, validity: 1d }\n'],
    [
      'inline policy on a label whose profile is configured too',
      'est.labels.strict.keyAlgorithms',
      'profiles:\n  strict: { validity: 1d }\nest:\n  labels:\n    strict: { keyAlgorithms: [ecdsa-p256] }\n',
    ],
    ['a profile named like a built-in CA profile', 'profiles.tls-server', 'profiles:\n  tls-server: {}\n'],
    ['a profile named like the AK certificate profile', 'profiles.tpm-ak', 'profiles:\n  default: {}\n  tpm-ak: {}\n'],
    ['a profile with keyEncipherment but without serverAuth', 'profiles.p.keyEncipherment', 'profiles:\n  default: {}\n  p: { keyEncipherment: true }\n'],
    ['a PCR policy on a profile with attestation off', 'profiles.p.pcrPolicy', `profiles:\n  default: {}\n  p: { pcrPolicy: { pcrs: { '0': '${'00'.repeat(32)}' } } }\n`],
    ['a TPM allow-list on a profile with attestation off', 'profiles.p.allowedTpms', "profiles:\n  default: {}\n  p: { allowedTpms: [{ manufacturer: 'id:00001014' }] }\n"],
    ['a key that may decrypt on a profile with attestation off', 'profiles.p.tpmKeyDecrypt', 'profiles:\n  default: {}\n  p: { tpmKeyDecrypt: true }\n'],
    ['a label with keyEncipherment inline but without serverAuth', 'est.labels.gw.keyEncipherment', 'est:\n  labels:\n    gw: { keyEncipherment: true }\n'],
    ['an unknown profile key', 'profiles.p.validty', 'profiles:\n  p: { validty: 1d }\n'],
    ['a SCEP path serving a profile with proofOfPossession', 'scep.paths.default.profile', 'profiles:\n  default: { proofOfPossession: true }\nscep:\n  enabled: true\n'],
    [
      'a SCEP path serving a profile without the one-time secret',
      'scep.paths.mdm.profile',
      'profiles:\n  default: {}\n  boot: { auth: [bootstrap-cert] }\nscep:\n  enabled: true\n  paths:\n    mdm: { profile: boot }\n',
    ],
    ['a SCEP path naming a profile that does not exist', 'scep.paths.mdm.profile', 'scep:\n  enabled: true\n  paths:\n    mdm: { profile: nosuch }\n'],
    ['an unknown SCEP path key', 'scep.paths.mdm.label', 'scep:\n  paths:\n    mdm: { profile: default, label: x }\n'],
  ])('%s is refused; the message is "<file>: %s: ..."', (_name, key, text) => {
    const file = yaml(`bad-${++badFiles}.yaml`, text);
    const m = configError(() => loadConfig({ file, env: {} }));
    expect(m.startsWith(`${file}: ${key}: `)).toBe(true);
  });

  it('a file that does not exist, or is not YAML, or is a list: config errors naming the file', () => {
    const missing = path.join(os.tmpdir(), 'device-ca-no-such-config.yaml');
    expect(configError(() => loadConfig({ file: missing, env: {} }))).toContain(missing);
    const notYaml = yaml('not-yaml.yaml', 'https: [\n');
    expect(configError(() => loadConfig({ file: notYaml, env: {} }))).toContain(notYaml);
    const list = yaml('list.yaml', '- a\n- b\n');
    expect(configError(() => loadConfig({ file: list, env: {} }))).toContain(list);
  });

  it('an empty file means the defaults', () => {
    expect(loadConfig({ file: yaml('empty.yaml', ''), env: {} })).toEqual(loadConfig({ env: {} }));
  });
});

describe('the result is frozen', () => {
  const cfg = loadConfig({ env: {} });

  it('at every level', () => {
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.https)).toBe(true);
    expect(Object.isFrozen(cfg.https.names)).toBe(true);
    expect(Object.isFrozen(cfg.est.labels)).toBe(true);
    expect(Object.isFrozen(cfg.est.labels.default)).toBe(true);
    expect(Object.isFrozen(cfg.profiles.default.keyAlgorithms)).toBe(true);
  });

  it('so writes throw (strict mode) and change nothing', () => {
    expect(() => {
      (cfg as { workers: number }).workers = 9;
    }).toThrow(TypeError);
    expect(() => {
      (cfg.https as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (cfg.profiles.default.keyAlgorithms as string[]).push('rsa-4096');
    }).toThrow(TypeError);
    expect(cfg.workers).toBe(0);
    expect(cfg.https.port).toBe(8443);
  });

  it('each call returns its own object (a frozen default cannot leak between loads)', () => {
    const a = loadConfig({ env: {} });
    const b = loadConfig({ env: { DEVICE_CA_HTTPS_PORT: '9443' } });
    expect(a).not.toBe(b);
    expect(a.https.port).toBe(8443);
    expect(b.https.port).toBe(9443);
  });
});

describe('profiles.<name>.pcrPolicy', () => {
  const z64 = '00'.repeat(32);
  it('reads a bank and PCR index -> value; absent by default', () => {
    const file = yaml('pcr-ok.yaml', `profiles:\n  default: {}\n  p: { attestation: required, pcrPolicy: { pcrs: { '0': '${z64}', '23': '${'ab'.repeat(32)}' } } }\n`);
    const cfg = loadConfig({ file, env: {} });
    expect(cfg.profiles.p.pcrPolicy).toEqual({ bank: 'sha256', pcrs: { '0': z64, '23': 'ab'.repeat(32) } });
    expect(loadConfig({ env: {} }).profiles.default.pcrPolicy).toBeUndefined();
  });

  it.each([
    ['a value not of the bank size', `{ bank: sha384, pcrs: { '0': '${z64}' } }`],
    ['PCR index 24', `{ pcrs: { '24': '${z64}' } }`],
    ['no PCR', '{ pcrs: {} }'],
    ['a value not hex', `{ pcrs: { '0': '${'zz'.repeat(32)}' } }`],
  ])('refuses %s', (_n, policy) => {
    const file = yaml(`pcr-bad-${++badFiles}.yaml`, `profiles:\n  default: {}\n  p: { pcrPolicy: ${policy} }\n`);
    expect(configError(() => loadConfig({ file, env: {} }))).toContain('pcrPolicy');
  });
});

describe('profiles.<name>.allowedTpms', () => {
  it('reads manufacturer, model and a quoted hex firmware version; absent by default', () => {
    const file = yaml(
      'tpms-ok.yaml',
      `profiles:\n  default: {}\n  p:\n    attestation: required\n    allowedTpms:\n      - { manufacturer: 'id:49465800' }\n      - { manufacturer: 'id:00001014', model: swtpm, minFirmwareVersion: '0x2019102300163636' }\n`,
    );
    expect(loadConfig({ file, env: {} }).profiles.p.allowedTpms).toEqual([{ manufacturer: 'id:49465800' }, { manufacturer: 'id:00001014', model: 'swtpm', minFirmwareVersion: '0x2019102300163636' }]);
    expect(loadConfig({ env: {} }).profiles.tpm.allowedTpms).toBeUndefined();
  });

  it.each([
    ['an unquoted firmware version (a YAML number)', "[{ manufacturer: 'id:00001014', minFirmwareVersion: 0x2019 }]"],
    ['a firmware version over 64 bits', "[{ manufacturer: 'id:00001014', minFirmwareVersion: '0x12345678901234567' }]"],
    ['an empty list', '[]'],
    ['an entry without manufacturer', '[{ model: swtpm }]'],
    ['an unknown entry key', "[{ manufacturer: 'id:00001014', vendor: x }]"],
  ])('refuses %s', (_n, list) => {
    const file = yaml(`tpms-bad-${++badFiles}.yaml`, `profiles:\n  default: {}\n  p: { attestation: required, allowedTpms: ${list} }\n`);
    expect(configError(() => loadConfig({ file, env: {} }))).toContain('allowedTpms');
  });
});
