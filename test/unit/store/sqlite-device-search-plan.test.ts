import Database from 'better-sqlite3';
import { SqliteStore, listDevicesSql } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * The devices page's search on the SQLite store (migrations 16 and 17): every filter is answered from an
 * index in id order, so a page of 50 reads about 50 index entries whatever the store holds: no walk of
 * every device (SCAN), no sort of all matches (TEMP B-TREE). Before migration 17 an owner search sorted
 * all of the owner's devices for each page and a state search walked the devices in id order until it
 * had found a page (bench console-devices at 1,000,000 devices).
 */

let dir: TmpDir;
let file: string;
beforeAll(async () => {
  dir = makeTmpDir('device-ca-device-search-');
  file = dir.file('device-ca.sqlite');
  await new SqliteStore(file).close();
});
afterAll(() => dir.cleanup());

const plan = (filter: Parameters<typeof listDevicesSql>[0]): string => {
  const q = listDevicesSql(filter, 50);
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`EXPLAIN QUERY PLAN ${q.sql}`).all(...q.args) as { detail: string }[]).map((r) => r.detail).join(' | ');
  } finally {
    db.close();
  }
};

it.each([
  ['first page', {}, /USING INDEX sqlite_autoindex_devices_1 \(id>\?\)/],
  ['next page', { after: 'dev-5' }, /USING INDEX sqlite_autoindex_devices_1 \(id>\?\)/],
  ['id prefix', { idPrefix: 'dev-1' }, /USING INDEX sqlite_autoindex_devices_1 \(id>\? AND id<\?\)/],
  ['owner', { owner: 'acme' }, /USING INDEX devices_owner_id \(owner=\? AND id>\?\)/],
  ['owner, next page', { owner: 'acme', after: 'dev-5' }, /USING INDEX devices_owner_id \(owner=\? AND id>\?\)/],
  ['owner and id prefix', { owner: 'acme', idPrefix: 'dev-1' }, /USING INDEX devices_owner_id \(owner=\? AND id>\? AND id<\?\)/],
  ['state', { state: 'suspended' as const }, /USING INDEX devices_state_id \(state=\? AND id>\?\)/],
  ['owner and state', { owner: 'acme', state: 'active' as const }, /USING INDEX devices_owner_id \(owner=\? AND id>\?\)/],
  ['label', { label: 'rare' }, /USING INDEX devices_label \(label=\? AND id>\?\)/],
])('%s: read from an index in id order, no walk and no sort', (_name, filter, index) => {
  const p = plan(filter);
  expect(p).toMatch(index);
  expect(p).not.toMatch(/TEMP B-TREE|SCAN/);
});
