import * as fs from 'node:fs';
import * as path from 'node:path';
import { BENCH_IDS, Section, benchJson } from '../../../bench/bench-table';

/** bench-json: the shape `npm run bench -- --json` prints (not the numbers), and that every target id is given to a row. */
describe('bench --json', () => {
  const sections: Section[] = [
    {
      module: 'issuance',
      seconds: 12.5,
      rows: [
        { name: 'sequential', figure: '1 000 cert/s', baseline: 'sign 30 000/s', ratio: 0.033 },
        { id: 'issuance.core.parallel', name: 'parallel', figure: '5 000 cert/s', baseline: 'sign 30 000/s', ratio: 0.166, note: 'n' },
      ],
    },
    { module: 'pkcs11-sign', status: 'skipped: not present', seconds: 0.001 },
    { module: 'crl', seconds: 3, rows: [{ id: 'crl.1m', name: 'crl', figure: '1 s', baseline: 'openssl 0 s', ratio: Infinity }] },
  ];

  it('prints every row flat with its module, id (null for reference rows), figure, baseline and ratio', () => {
    const j = benchJson('node v20 test', sections);
    expect(j).toEqual({
      machine: 'node v20 test',
      rows: [
        { id: null, module: 'issuance', name: 'sequential', figure: '1 000 cert/s', baseline: 'sign 30 000/s', ratio: 0.033, note: null },
        { id: 'issuance.core.parallel', module: 'issuance', name: 'parallel', figure: '5 000 cert/s', baseline: 'sign 30 000/s', ratio: 0.166, note: 'n' },
        // JSON has no Infinity: a ratio that is not finite is null rather than a string or a crash
        { id: 'crl.1m', module: 'crl', name: 'crl', figure: '1 s', baseline: 'openssl 0 s', ratio: null, note: null },
      ],
      modules: [
        { module: 'issuance', status: null, seconds: 12.5 },
        { module: 'pkcs11-sign', status: 'skipped: not present', seconds: 0.001 },
        { module: 'crl', status: null, seconds: 3 },
      ],
    });
    // what a script reads back is what was built
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it('lists the stable ids the performance issue names, each once', () => {
    expect([...BENCH_IDS].sort()).toEqual(
      [
        'crl.1m',
        'est.enroll.basic',
        'est.reenroll.mtls',
        'issuance.core.parallel',
        'ocsp.cached.keepalive',
        'ocsp.nonce.newconn',
        'pkcs11.issuance',
        'pkcs11.ocsp.live',
        'scale.issuance',
        'scale.reenroll',
        'scale.ocsp',
        'scale.crl',
        'scale.populate',
        'scale.import',
        'tpm.attestation.verify',
        'redis.enroll.basic',
        'redis.reenroll.mtls',
        'redis.ocsp.cached',
        'redis.nodes2.enroll.basic',
        'redis.nodes2.reenroll.mtls',
        'redis.nodes2.enroll.basic.keepalive',
        'redis.nodes2.reenroll.mtls.keepalive',
        'redis.enroll.basic.cpu',
        'redis.reenroll.mtls.cpu',
        'redis.nodes2.enroll.basic.derived',
        'redis.nodes2.reenroll.mtls.derived',
        'redis.nodes2.enroll.basic.keepalive.derived',
        'redis.nodes2.reenroll.mtls.keepalive.derived',
        'redis.ocsp.cached.commands',
      ].sort(),
    );
  });

  it('gives every id to exactly one row in the bench modules', () => {
    const dir = path.join(__dirname, '../../../bench');
    const sources = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.ts') && f !== 'bench-table.ts')
      .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
      .join('\n');
    for (const id of BENCH_IDS) expect({ id, uses: sources.split(`'${id}'`).length - 1 }).toEqual({ id, uses: 1 });
  });
});
