import Database from 'better-sqlite3';
import express from 'express';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { HTTP_ERROR_STATUS } from '../../../src/protocols/http-error-status';
import { opsRouter } from '../../../src/protocols/ops/ops-router';
import { createStore } from '../../../src/store/create-store';
import { sqliteUnavailable } from '../../../src/store/sqlite/sqlite-errors';
import { StoreHealth } from '../../../src/store/store-health';
import { withStoreErrors } from '../../../src/store/store-errors';
import { Store } from '../../../src/store/store';

/**
 * A store that cannot serve (issue 8 point 5): SQLite's disk-full, I/O, corruption, read-only and
 * lock-timeout errors leave the store as 'store-unavailable' (HTTP 503 with Retry-After) instead of an
 * anonymous 500, and /healthz reports a store it cannot read or write. Corruption is real: pages of a
 * copy of a store file are overwritten. (A real full disk is in test/interop/store-unavailable.test.ts.)
 */

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-unavail-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** sqliteError runs fn on a fresh database and returns what it threw */
function sqliteError(fn: (db: Database.Database, file: string) => void): unknown {
  const file = path.join(dir, `e-${Math.random().toString(16).slice(2)}.sqlite`);
  const db = new Database(file);
  try {
    db.exec('CREATE TABLE t (x UNIQUE)');
    fn(db, file);
  } catch (e) {
    return e;
  } finally {
    if (db.open) db.close();
  }
  throw new Error('no error thrown');
}

describe('SQLite errors that mean the store cannot serve become store-unavailable (503 + Retry-After)', () => {
  it.each([
    ['SQLITE_FULL (max_page_count reached)', (db: Database.Database) => (db.pragma('max_page_count = 2'), db.prepare('INSERT INTO t VALUES (randomblob(100000))').run()), 'disk full', 30],
    ['SQLITE_READONLY', (_db: Database.Database, file: string) => new Database(file, { readonly: true }).prepare('INSERT INTO t VALUES (1)').run(), 'read-only', 30],
    [
      'SQLITE_BUSY (another writer holds the lock past busy_timeout)',
      (db: Database.Database, file: string) => {
        db.exec('BEGIN IMMEDIATE');
        const other = new Database(file, { timeout: 0 });
        other.prepare('INSERT INTO t VALUES (1)').run();
      },
      'locked by another writer',
      2,
    ],
  ])('%s', (_name, fn, reason, retry) => {
    const e = sqliteUnavailable(sqliteError(fn));
    expect(e).toBeInstanceOf(DeviceCaError);
    expect({ code: e!.code, message: e!.message, retryAfterSeconds: e!.retryAfterSeconds, status: HTTP_ERROR_STATUS[e!.code] }).toEqual({
      code: 'store-unavailable',
      message: `store unavailable (${reason})`,
      retryAfterSeconds: retry,
      status: 503,
    });
  });

  it('a constraint violation (a request problem or a bug, not the store) stays unmapped', () => {
    const e = sqliteError((db) => (db.prepare('INSERT INTO t VALUES (1)').run(), db.prepare('INSERT INTO t VALUES (1)').run()));
    expect((e as { code: string }).code).toBe('SQLITE_CONSTRAINT_UNIQUE');
    expect(sqliteUnavailable(e)).toBeNull();
    expect(sqliteUnavailable(new Error('x'))).toBeNull();
  });
});

describe('a store file with damaged pages', () => {
  let store: Store;
  let copy: string;

  beforeEach(async () => {
    const file = path.join(dir, 'device-ca.sqlite');
    const good = createStore({ store: { type: 'sqlite', path: file } });
    for (let i = 0; i < 300; i++) await good.appendAudit({ type: 'test.filler', actor: 'test', subject: `s${i}`, data: { pad: 'x'.repeat(200) } });
    await good.close();
    // overwrite the audit table's root page in a copy: every read of the audit chain now meets garbage
    copy = path.join(dir, 'copy.sqlite');
    fs.copyFileSync(file, copy);
    const ro = new Database(copy, { readonly: true });
    const root = (ro.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'audit'").get() as { rootpage: number }).rootpage;
    const pageSize = ro.pragma('page_size', { simple: true }) as number;
    ro.close();
    const fd = fs.openSync(copy, 'r+');
    fs.writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (root - 1) * pageSize);
    fs.closeSync(fd);
    store = createStore({ store: { type: 'sqlite', path: copy } });
  });
  afterEach(async () => store.close());

  it('store methods reject with store-unavailable (file corrupt)', async () => {
    await expect(store.listAudit({})).rejects.toMatchObject({ code: 'store-unavailable', message: 'store unavailable (file corrupt)', retryAfterSeconds: 30 });
    await expect(store.appendAudit({ type: 't', actor: 'a', subject: 's', data: {} })).rejects.toMatchObject({ code: 'store-unavailable' });
    await expect(store.head('device-ca-issuing')).rejects.toMatchObject({ code: 'store-unavailable' });
  });

  it('probe fails on the read, and /healthz answers 503 with the reason and Retry-After', async () => {
    await expect(store.probe()).rejects.toMatchObject({ code: 'store-unavailable', message: 'store read failed (file corrupt)' });
    const health = new StoreHealth(store);
    const app = express().use('/', opsRouter({ registry: new Registry(), health: () => health.check() }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`);
      expect({ status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() }).toEqual({
        status: 503,
        retryAfter: '30',
        body: 'unhealthy: store read failed (file corrupt)\n',
      });
    } finally {
      server.close();
    }
  });
});

describe('StoreHealth', () => {
  it('probes at most once per second, however many callers, and reports a failing write', async () => {
    let t = 1_000_000;
    let calls = 0;
    let fail = false;
    const health = new StoreHealth(
      {
        probe: async () => {
          calls++;
          if (fail) throw new DeviceCaError('store-unavailable', 'store write failed (disk full)', { retryAfterSeconds: 30 });
        },
      },
      1000,
      () => t,
    );
    await Promise.all([health.check(), health.check(), health.check()]);
    expect(calls).toBe(1);
    fail = true;
    t += 999;
    await health.check(); // still the cached success
    expect(calls).toBe(1);
    t += 1;
    await expect(health.check()).rejects.toMatchObject({ message: 'store write failed (disk full)' });
    expect(calls).toBe(2);
  });

  it('a real store that can read and write is healthy, and its probe leaves one row in store_probe', async () => {
    const file = path.join(dir, 'ok.sqlite');
    const s = createStore({ store: { type: 'sqlite', path: file } });
    await expect(new StoreHealth(s).check()).resolves.toBeUndefined();
    await s.probe(new Date(42));
    await s.close();
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT id, at FROM store_probe').all()).toEqual([{ id: 1, at: 42 }]);
    db.close();
  });
});

describe('withStoreErrors', () => {
  it('maps rejections, synchronous throws and failures inside async iteration; leaves results alone', async () => {
    const boom = new Error('backend');
    const mapped = new DeviceCaError('store-unavailable', 'mapped');
    const raw = {
      ok: async () => 7,
      rejects: async () => Promise.reject(boom),
      throws: () => {
        throw boom;
      },
      async *pages() {
        yield [1];
        throw boom;
      },
    };
    const s = withStoreErrors(raw, (e) => (e === boom ? mapped : e));
    await expect(s.ok()).resolves.toBe(7);
    await expect(s.rejects()).rejects.toBe(mapped);
    expect(() => s.throws()).toThrow(mapped);
    const seen: number[][] = [];
    await expect(
      (async () => {
        for await (const p of s.pages()) seen.push(p);
      })(),
    ).rejects.toBe(mapped);
    expect(seen).toEqual([[1]]);
  });
});
