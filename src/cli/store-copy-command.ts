import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { checkStoreDurable, createStore } from '../store/create-store';
import { Store } from '../store/store';
import { copyStore } from '../store/store-copy';
import { isSnapshotSource, isSnapshotTarget } from '../store/store-snapshot';

/** SQLITE_FILE: the store file's name in a data directory (store.path's default). */
const SQLITE_FILE = 'device-ca.sqlite';

/**
 * sqliteSource resolves `--from`: a store file, or a data directory holding device-ca.sqlite. It must
 * exist: opening a path that does not would create an empty store and copy nothing.
 */
function sqliteSource(from: string): string {
  let file = from;
  try {
    if (fs.statSync(from).isDirectory()) file = path.join(from, SQLITE_FILE);
  } catch {
    throw new DeviceCaError('config', `--from ${from}: no such file or directory`);
  }
  if (!fs.existsSync(file)) throw new DeviceCaError('config', `--from ${from}: no SQLite store ${file}`);
  return file;
}

/**
 * storeCopy is `device-ca store copy --from <sqlite> --to <redis url>`: progress on stderr, the summary on
 * stdout, `store.copied` appended to the target's audit chain once the copy is verified.
 */
export async function storeCopy(cfg: Config, o: { from: string; to: string }, out: { json: boolean; actor: string }): Promise<void> {
  if (!/^rediss?:\/\/\S+$/.test(o.to)) throw new DeviceCaError('config', `--to ${o.to}: not a redis:// or rediss:// URL`);
  const file = sqliteSource(o.from);
  const source = createStore({ store: { type: 'sqlite', path: file } });
  let target: Store | undefined;
  try {
    const redisCfg = { store: { type: 'redis' as const, path: '', url: o.to, allowNoPersistence: cfg.store.allowNoPersistence } };
    target = createStore(redisCfg);
    await checkStoreDurable(redisCfg, target);
    if (!isSnapshotSource(source) || !isSnapshotTarget(target)) throw new DeviceCaError('internal', 'these stores cannot be copied');
    const started = Date.now();
    if (!out.json) console.error(`copying ${file} to ${o.to.replace(/\/\/[^@/]*@/, '//***@')}`);
    const s = await copyStore(source, target, {
      progress: (p) => {
        if (!out.json) console.error(`  ${p.kind}: ${p.copied}`);
      },
    });
    await target.appendAudit({ type: 'store.copied', actor: out.actor, subject: 'store', data: { from: file, rows: s.rows, auditRecords: s.audit.records, lastHash: s.audit.lastHash } });
    const seconds = (Date.now() - started) / 1000;
    if (out.json) console.log(JSON.stringify({ from: file, rows: s.rows, census: s.census, audit: s.audit, seconds }));
    else {
      const c = s.census;
      console.log(
        [
          `copied in ${seconds.toFixed(1)} s and verified:`,
          `  devices ${c.devices}, secrets ${c.secrets}, certificates ${c.certificates} (${c.revokedCertificates} revoked), requests ${c.requests}, tokens ${c.tokens}, TPM AKs ${c.tpmAks}`,
          `  CRL numbers ${JSON.stringify(c.crlNumbers)}, CRLs ${Object.keys(c.crls).length}, CA state ${Object.keys(c.caState).join(', ')}`,
          `  audit chain intact: ${s.audit.records} records, last hash ${s.audit.lastHash} (then store.copied appended)`,
          `next: start the nodes with DEVICE_CA_STORE=<the Redis URL> and the same keys (see README, "Several nodes, one CA")`,
        ].join('\n'),
      );
    }
  } finally {
    await source.close();
    await target?.close();
  }
}
