import Database from 'better-sqlite3';
import { FIRMWARE_ERROR_SUMMARY_SQL, FIRMWARE_RUNNING_SUMMARY_SQL, SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * `firmware status` at a million devices (issue 13): its summary (devices per running version and per load
 * error code) is counted on the indexes of migration 22, reading index entries only, never the receipt
 * rows and never sorting them (a temporary B-tree for GROUP BY would mean every row is read and sorted).
 */

let dir: TmpDir;
beforeEach(() => {
  dir = makeTmpDir('device-ca-fw-summary-plan-');
});
afterEach(() => dir.cleanup());

const plan = (file: string, sql: string): string => {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all('fw') as { detail: string }[]).map((r) => r.detail).join(' | ');
  } finally {
    db.close();
  }
};

it.each([
  ['running versions', FIRMWARE_RUNNING_SUMMARY_SQL, /^SEARCH firmware_receipts USING COVERING INDEX firmware_receipts_running \(name=\?\)$/],
  ['load error codes', FIRMWARE_ERROR_SUMMARY_SQL, /^SEARCH firmware_receipts USING COVERING INDEX firmware_receipts_error \(name=\? AND error_code>\?\)$/],
])('the %s summary reads a covering index, no rows, no sort', async (_what, sql, expected) => {
  const file = dir.file('device-ca.sqlite');
  await new SqliteStore(file).close();
  expect(plan(file, sql)).toMatch(expected);
});
