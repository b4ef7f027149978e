import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { firmwareReleaseKey } from '../../../src/store/store';
import { bufferSource } from '../../../src/cms/byte-source';

/**
 * Firmware releases and receipts written before releases kept their target hardware (issue 13): after
 * the migration a release recorded before has no targets (any hardware, so `latest` still serves it to
 * every device), and the receipts recorded before tell a device's hardware (firmwareHardwareOf).
 */

it('SQLite: releases recorded before the hardware column read back without targets; old receipts give the hardware', async () => {
  const at = MIGRATIONS.findIndex((m) => m.includes('firmware_releases ADD COLUMN hardware'));
  expect(at).toBeGreaterThan(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-fwhw-'));
  const file = path.join(dir, 'old.sqlite');
  try {
    const db = new Database(file);
    db.exec(`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (${at});`);
    for (const m of MIGRATIONS.slice(0, at)) db.exec(m);
    db.prepare(`INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, released_at, der) VALUES (?, 'fw', 1, ?, '[]', NULL, 1, ?)`).run(
      firmwareReleaseKey('fw', 1),
      '00'.repeat(32),
      Buffer.from('release 1'),
    );
    const rcpt = db.prepare(`INSERT INTO firmware_receipts (name, device_id, hw_type, running_version, running_at, receipt_sha256, updated_at) VALUES (?, 'dev-1', ?, 1, ?, ?, ?)`);
    rcpt.run('fw', '1.3.6.1.4.1.99.1', 1000, 'a', 1000);
    rcpt.run('other', '1.3.6.1.4.1.99.2', 2000, 'b', 2000);
    db.close();

    const store = new SqliteStore(file);
    const old = await store.getFirmwareRelease('fw', 1);
    expect(old).toMatchObject({ name: 'fw', version: 1, recipients: null });
    expect(old?.hardware).toBeUndefined();
    expect(await store.firmwareHardwareOf('dev-1')).toBe('1.3.6.1.4.1.99.2');
    expect(await store.firmwareHardwareOf('dev-2')).toBeNull();
    await store.saveFirmwareRelease(
      { name: 'fw', version: 2, sha256: '00'.repeat(32), signers: [], recipients: null, hardware: [{ type: '1.3.6.1.4.1.99.1' }], releasedAt: new Date() },
      bufferSource(Buffer.from('release 2')),
      { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version: 2 } },
    );
    expect((await store.listFirmwareReleases({ name: 'fw' })).items.map((r) => [r.version, r.hardware])).toEqual([
      [2, [{ type: '1.3.6.1.4.1.99.1' }]],
      [1, undefined],
    ]);
    await store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
