import Database from 'better-sqlite3';
import * as path from 'node:path';
import { verifyAuditChain } from '../../../src/audit/audit-verify';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { makeTmpDir, TmpDir } from '../../helpers/tmp';

/**
 * verifyAuditChain over a real SqliteStore holding more records than one store page: `device-ca audit
 * verify` must read to the end of the chain, so an edit anywhere is found, however long the log.
 */

let dir: TmpDir;
let file: string;
let store: SqliteStore;
beforeEach(() => {
  dir = makeTmpDir('device-ca-audit-verify-');
  file = path.join(dir.path, 'device-ca.sqlite');
  store = new SqliteStore(file);
});
afterEach(async () => {
  await store.close();
  dir.cleanup();
});

/** append n records; the store's group commit puts each batch in one transaction, so this is quick. */
async function append(n: number): Promise<void> {
  for (let i = 0; i < n; i += 2000)
    await Promise.all(Array.from({ length: Math.min(2000, n - i) }, (_, j) => store.appendAudit({ type: 'tick', actor: 'test', subject: `t${i + j}`, data: { i: i + j } })));
}

/** edit changes one stored record behind the store's back, as someone with the database file could. */
function edit(seq: number, column: 'data' | 'subject', value: string): void {
  const db = new Database(file);
  try {
    db.prepare(`UPDATE audit SET ${column} = ? WHERE seq = ?`).run(value, seq);
  } finally {
    db.close();
  }
}

it.each([
  [1_500, 1_200],
  [20_000, 19_990],
])('%i records, record %i edited: verify names that record, not "ok"', async (n, bad) => {
  await append(n);
  expect(await verifyAuditChain(store)).toMatchObject({ ok: true, records: n });
  edit(bad, 'data', JSON.stringify({ i: -1 }));
  expect(await verifyAuditChain(store)).toMatchObject({ ok: false, records: bad - 1, firstBad: { seq: bad, problem: expect.stringContaining('edited') } });
});

it('a record removed past the first pages is found as a gap', async () => {
  await append(2_600);
  const db = new Database(file);
  db.prepare('DELETE FROM audit WHERE seq = 2500').run();
  db.close();
  expect(await verifyAuditChain(store)).toMatchObject({ ok: false, records: 2_499, firstBad: { seq: 2_501, problem: expect.stringContaining('removed') } });
});

it('the page size the caller asks for does not matter: every size reads the whole chain', async () => {
  await append(2_345);
  edit(2_345, 'subject', 'someone-else');
  for (const pageSize of [1, 7, 1000, 5000]) expect((await verifyAuditChain(store, pageSize)).firstBad).toMatchObject({ seq: 2_345 });
});
