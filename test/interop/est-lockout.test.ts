import Database from 'better-sqlite3';
import * as path from 'node:path';
import { header, openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The EST brute-force lockout against the built service with two worker processes sharing one SQLite
 * store: 50 parallel curl requests with wrong secrets for one device id get at most
 * enrollment.authFailureLimit (5) secret checks (401) and 429 + Retry-After for the rest, whichever worker
 * serves them; the right secret is then refused too until the window passes.
 */

let svc: RunningService;
let tmp: TmpDir;
const { next, curl, cliOk, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp });

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-est-lockout-');
  svc = await startService({ workers: 2 });
});
afterAll(teardown);

async function csrFile(id: string): Promise<string> {
  const key = tmp.file(`keys/${id}.pem`);
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
  const der = tmp.file(`csr/${id}.der`);
  await openssl('req', '-new', '-key', key, '-subj', `/CN=${id}`, '-outform', 'DER', '-out', der);
  return tmp.write(`csr/${id}.b64`, `${(await openssl('base64', '-in', der)).stdout}`);
}

const enroll = (body: string, user: string, secret: string) => curl(`${svc.est}/simpleenroll`, ['-H', 'Content-Type: application/pkcs10', '--data-binary', `@${body}`, '-u', `${user}:${secret}`]);

it('50 parallel wrong secrets for one device id on 2 workers: five 401s, the rest 429 with Retry-After; then the right secret is 429 too', async () => {
  const id = `lock-${next()}`;
  const secret = (await cliOk('devices', 'add', id, '--owner', 'acme')).trim();
  const body = await csrFile(id);
  const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => enroll(body, id, `wrong-${i}`)));
  const statuses = replies.map((r) => r.status).sort();
  expect(statuses.filter((s) => s === 401)).toHaveLength(5);
  expect(statuses.filter((s) => s === 429)).toHaveLength(45);
  for (const r of replies.filter((x) => x.status === 429)) {
    expect(header(r, 'retry-after')).toMatch(/^[1-9]\d*$/);
    expect(Number(header(r, 'retry-after'))).toBeLessThanOrEqual(15 * 60);
  }
  const right = await enroll(body, id, secret);
  expect(right.status).toBe(429);
  expect(Number(header(right, 'retry-after'))).toBeGreaterThan(0);

  // what the store shows an operator: five failures, one auth.locked audit record, no certificate
  const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
  try {
    expect(db.prepare('SELECT COUNT(*) AS n FROM auth_attempts WHERE key = ?').get(`basic:${id}`)).toEqual({ n: 5 });
    expect(db.prepare("SELECT COUNT(*) AS n FROM audit WHERE type = 'auth.locked' AND subject = ?").get(id)).toEqual({ n: 1 });
    expect(db.prepare('SELECT COUNT(*) AS n FROM certificates WHERE device_id = ?').get(id)).toEqual({ n: 0 });
  } finally {
    db.close();
  }
});
