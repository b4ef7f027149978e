#!/usr/bin/env node
import { Command, Option } from 'commander';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { initCa, caDir } from '../ca/ca-hierarchy';
import { recordStoreMark, verifyStoreIdentity } from '../ca/ca-identity';
import { exportHashedDir, exportRootToHashedDir, runReload } from '../ca/crl-export';
import { RootOcspImport, dropRoot, importRootCrl, makeRootCrl, reissueIssuing, revokeIssuing, rolloverRoot } from '../ca/ca-lifecycle';
import { rolloverIssuing } from '../ca/issuing-rollover';
import { CA_DUTIES_INTERVAL_MS } from '../ca/ca-duties';
import { CrlReason, crlReasonCode } from '../ca/crl-encoder';
import { RootCrlInfo } from '../ca/root-crl';
import { writeFileAtomic } from '../data-dir/atomic-file';
import { verifyAuditChain } from '../audit/audit-verify';
import { OPERATOR } from '../ra/device-lifecycle';
import { deviceAttestationFacts } from '../ra/device-attestation-facts';
import { currentCommand } from '../ra/device-commands';
import { serverSecretKey } from '../ra/enrollment-secret';
import { DEVICE_STATES, REVOCATION_REASONS } from '../store/store';
import { toPem } from '../ca/pem';
import { loadConfig } from '../config/load-config';
import { parseDuration } from '../config/duration';
import { Config } from '../config/schema';
import { Store } from '../store/store';
import { DeviceCaError, isDeviceCaError } from '../errors/device-ca-error';
import { keyAssignments } from '../ca/key-assignments';
import { KeyRouter } from '../keys/key-router';
import { openKeyBackend } from '../keys/open-key-backend';
import { createLogger, openRegistrationAuthority, openStore } from '../main';
import { scepHint, scepUrls } from './scep-hint';
import { serve } from './serve';
import { collectItems } from '../store/paging';
import { printRecords, printRecord } from './output';
import { importDevices, importFormat } from './devices-import';
import { registerFirmwareCommands } from './firmware-commands';
import { registerAgentCommands } from './agent-commands';
import { registerDeviceCommandCommands } from './device-command-commands';
import { storeCopy } from './store-copy-command';

/** device-ca command line: the operator's interface. Every command takes --json and --help. */
const program = new Command();
program
  .name('device-ca')
  .description('A certificate authority for device fleets: EST enrollment, device lifecycle, CRL and OCSP.')
  .option('-c, --config <file>', 'YAML config file (default: $DEVICE_CA_CONFIG, else built-in defaults; see config/default.yaml)')
  .option('--json', 'machine-readable JSON output')
  .showHelpAfterError()
  .addHelpText(
    'after',
    '\nEnvironment: DEVICE_CA_DATA (data dir), DEVICE_CA_HTTPS_PORT, DEVICE_CA_HTTP_PORT, DEVICE_CA_PUBLIC_URL,\nand DEVICE_CA_<KEY_PATH> for any config key (e.g. DEVICE_CA_ENROLLMENT_SECRET_TTL=1d).',
  );

const globals = (): { config?: string; json?: boolean } => program.opts();
const config = (): Config => loadConfig({ file: globals().config });
const json = (): boolean => Boolean(globals().json);
const actor = (): string => `cli:${process.env.USER ?? 'operator'}`;
/** listLimit reads --limit and --all: how many items a list command gathers, following the store's pages. */
const listLimit = (o: { limit: string; all?: boolean }): number => {
  if (o.all) return Infinity;
  const n = Number(o.limit);
  if (!Number.isInteger(n) || n < 1) throw new DeviceCaError('bad-request', '--limit must be a positive integer');
  return n;
};
/** moreHint tells on stderr (stdout keeps its format) how to get the next page when a list stopped at --limit. */
const moreHint = (what: string, next: string | null): void => {
  if (next !== null) console.error(`device-ca: more ${what}: repeat with --after ${next} (or --all)`);
};
/**
 * openCheckedStore opens the store for a command, refusing (exit code 3) one that is not this data
 * directory's CA's: missing, emptied, rolled back or another deployment's (ca-identity.ts). Only
 * `serve --accept-store-rollback` serves a rolled-back store.
 */
const openCheckedStore = async (cfg: Config): Promise<Store> => {
  const store = openStore(cfg);
  try {
    await verifyStoreIdentity(cfg, store);
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
};
/** progressBar: [#####.....] 50% */
const progressBar = (done: number, total: number): string => {
  const f = total > 0 ? done / total : 1;
  return `[${'#'.repeat(Math.round(f * 30)).padEnd(30, '.')}] ${Math.floor(f * 100)}%`;
};
const ttlOption = (v: string): number => {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new DeviceCaError('bad-request', `--secret-ttl: ${(e as Error).message}`);
  }
};

program
  .command('init')
  .description('create the root and issuing CA (keys and certificates) in the data directory; never overwrites')
  .action(async () => {
    const cfg = config();
    const keys = openKeyBackend(cfg);
    // keys first: a wrong PIN or an absent token fails before the store file is created
    if (keys instanceof KeyRouter) await Promise.all([keys.open('root'), keys.open('issuing')]).catch(async (e: unknown) => (await keys.close(), Promise.reject(e)));
    let store: Store;
    try {
      // an emptied store beside an existing CA is refused here, not answered with a second CA
      store = await openCheckedStore(cfg);
    } catch (e) {
      await keys.close();
      throw e;
    }
    try {
      const h = await initCa(cfg, keys, store);
      await recordStoreMark(cfg, store);
      // the server key for one-time secrets is created with the CA keys, so it is copied with them
      serverSecretKey(cfg)();
      const out = {
        dataDir: cfg.dataDir,
        root: { name: h.state.root.name, key: h.state.root.keyRef, cert: h.state.root.certFile },
        issuing: { name: h.state.issuing.name, key: h.state.issuing.keyRef, cert: h.state.issuing.certFile },
      };
      if (json()) console.log(JSON.stringify(out, null, 2));
      else console.log(`created CA in ${caDir(cfg)}\n  root:    ${out.root.cert}\n  issuing: ${out.issuing.cert}\n  trust anchor for clients: ${caDir(cfg)}/chain.pem`);
    } finally {
      await store.close();
      await keys.close();
    }
  });

program
  .command('serve')
  .description('run the HTTPS (EST) and HTTP (CA certs, health, metrics) listeners; creates the CA on first start')
  .option(
    '--accept-store-rollback',
    'serve a store that is behind the mark recorded in the data directory (restored from an older backup): what was recorded after it is lost; audited, and the mark is re-recorded',
  )
  .action(async (o: { acceptStoreRollback?: boolean }) => {
    const cfg = config();
    await serve(cfg, createLogger(cfg), { acceptStoreRollback: Boolean(o.acceptStoreRollback) });
  });

const devices = program.command('devices').description('register and inspect devices');
devices
  .command('add <id>')
  .description('register a device; prints its one-time enrollment secret alone on stdout')
  .option('--owner <owner>', 'owner (written as O= in its certificates)')
  .option('--label <label>', 'EST label the device must enroll under')
  .option('--secret-ttl <duration>', 'secret lifetime, e.g. 1h, 7d (default: enrollment.secretTtl)')
  .action(async (id: string, o: { owner?: string; label?: string; secretTtl?: string }) => {
    const cfg = config();
    let ttl: number | undefined;
    if (o.secretTtl !== undefined) {
      try {
        ttl = parseDuration(o.secretTtl);
      } catch (e) {
        throw new DeviceCaError('bad-request', `--secret-ttl: ${(e as Error).message}`);
      }
    }
    const h = await openRegistrationAuthority(cfg);
    try {
      const r = await h.ra.registerDevice({ id, owner: o.owner, label: o.label, secretTtlSeconds: ttl, actor: `cli:${process.env.USER ?? 'operator'}` });
      const scep = scepUrls(cfg, r.device.label);
      if (json())
        console.log(
          JSON.stringify({
            id: r.device.id,
            owner: r.device.owner,
            label: r.device.label,
            secret: r.secret,
            secretExpiresAt: r.expiresAt.toISOString(),
            ...(scep.length > 0 ? { scepUrls: scep } : {}),
          }),
        );
      else {
        console.log(r.secret);
        for (const line of scepHint(cfg, r.device.id, r.device.label)) console.error(line);
      }
    } finally {
      await h.close();
    }
  });
devices
  .command('import <file>')
  .description('register many devices from a JSON-lines or CSV file; writes their one-time secrets to a new file only you can read')
  .requiredOption('--secrets-out <file>', "new file for the secrets (mode 0600, refused if it exists; '-' for stdout), in the input's format")
  .addOption(new Option('--format <format>', 'input format (default: csv for *.csv, else jsonl)').choices(['jsonl', 'csv']))
  .option('--owner <owner>', 'owner of devices whose line names none')
  .option('--label <label>', 'EST label of devices whose line names none')
  .option('--secret-ttl <duration>', 'secret lifetime, e.g. 30d (default: enrollment.secretTtl)')
  .option('--skip-existing', 'pass over ids already registered (default: stop at the first, naming it)')
  .option('--batch <n>', 'devices per store transaction (1-10000)', '1000')
  .addHelpText(
    'after',
    [
      '',
      'Input: JSON lines {"id":"dev-1","owner":"acme","label":"default"} (owner and label optional), or CSV',
      'with a header naming the columns id, owner, label. Every line is checked before anything is written;',
      'bad lines are listed and nothing is imported. Output (--secrets-out): {"id","secret","secretExpiresAt"}',
      'per line, or CSV id,secret,secretExpiresAt. Each batch of secrets is on disk before its devices exist.',
    ].join('\n'),
  )
  .action(async (file: string, o: { secretsOut: string; format?: string; owner?: string; label?: string; secretTtl?: string; skipExisting?: boolean; batch: string }) => {
    const cfg = config();
    const ttl = o.secretTtl === undefined ? undefined : ttlOption(o.secretTtl);
    if (!fs.existsSync(file)) throw new DeviceCaError('bad-request', `no such file: ${file}`);
    const h = await openRegistrationAuthority(cfg);
    const started = Date.now();
    const bar = process.stderr.isTTY && !json();
    try {
      const r = await importDevices(h.ra, {
        file,
        format: importFormat(file, o.format),
        secretsOut: o.secretsOut,
        owner: o.owner,
        label: o.label,
        secretTtlSeconds: ttl,
        skipExisting: Boolean(o.skipExisting),
        batch: Number(o.batch),
        actor: actor(),
        progress: bar ? (done, total) => process.stderr.write(`\r${progressBar(done, total)} ${done}/${total} devices`) : undefined,
      });
      if (bar) process.stderr.write('\n');
      const secs = (Date.now() - started) / 1000;
      const summary = { file, created: r.created, existing: r.existing, seconds: Number(secs.toFixed(1)), secretsOut: o.secretsOut };
      if (json()) (o.secretsOut === '-' ? console.error : console.log)(JSON.stringify(summary));
      else
        console.error(
          `imported ${r.created} device(s)${r.existing ? `, ${r.existing} already registered passed over` : ''} in ${secs.toFixed(1)} s; secrets in ${o.secretsOut === '-' ? 'stdout' : o.secretsOut}`,
        );
    } finally {
      await h.close();
    }
  });
devices
  .command('list')
  .description('list devices')
  .option('--owner <owner>')
  .addOption(new Option('--state <state>').choices([...DEVICE_STATES]))
  .option('--limit <n>', 'at most n devices', '100')
  .option('--after <cursor>', 'page: continue after this cursor (printed on stderr when more remain)')
  .option('--all', 'every device, however many')
  .action(async (o: { owner?: string; state?: 'registered'; limit: string; after?: string; all?: boolean }) => {
    const max = listLimit(o);
    const store = await openCheckedStore(config());
    try {
      const page = await collectItems((after, want) => store.listDevices({ owner: o.owner, state: o.state, limit: want, after }), max, o.after);
      printRecords(json(), page.items, ['id', 'owner', 'label', 'state', 'updatedAt']);
      moreHint('devices', page.next);
    } finally {
      await store.close();
    }
  });
devices
  .command('show <id>')
  .description(
    'show a device, its certificates (tpmAttested: key attested by a TPM), its TPM attestation keys (AK certificate serial, last accepted TPM clock), last attestation verdict and last signed command (pending, fetched, done, failed, expired)',
  )
  .action(async (id: string) => {
    const store = await openCheckedStore(config());
    try {
      const d = await store.getDevice(id);
      if (!d) throw new DeviceCaError('not-found', `no device ${id}`);
      const tpm = await deviceAttestationFacts(store, id);
      const certs = (await collectItems((after, want) => store.listCertificates({ deviceId: id, after, limit: want }))).items.map(({ der: _der, ...c }) => ({
        ...c,
        tpmAttested: tpm.attestedSerials.has(c.serial),
      }));
      const last = tpm.lastAttestation;
      const lastAttestation = json() || !last ? last : `${last.verdict} ${last.at.toISOString()} ${last.verdict === 'attested' ? `serial ${last.serial}` : `check ${last.check}`}`;
      const aks = json()
        ? tpm.aks
        : tpm.aks.map((a) => ({ ...a, lastClock: a.lastClock && `resetCount ${a.lastClock.resetCount} restartCount ${a.lastClock.restartCount} clock ${a.lastClock.clock}` }));
      const cmd = (await currentCommand(store, id, new Date())).state;
      const command =
        json() || !cmd
          ? cmd
          : `${cmd.command} ${cmd.state} (nonce ${cmd.nonce}, issued ${cmd.issuedAt.toISOString()}${cmd.reportedAt ? `, reported ${cmd.reportedAt.toISOString()}` : ''}${cmd.reason ? `: ${cmd.reason}` : ''})`;
      printRecord(json(), { ...d, certificates: certs, aks, lastAttestation, command });
    } finally {
      await store.close();
    }
  });

for (const [cmd, what] of [
  ['suspend', 'put every valid certificate on hold (certificateHold); OCSP and CRL show it at once'],
  ['resume', 'release the holds of a suspended device'],
  ['retire', 'end of life: revoke everything (cessationOfOperation), delete credentials; the id can never enroll again'],
] as const) {
  devices
    .command(`${cmd} <id>`)
    .description(what)
    .action(async (id: string) => {
      const h = await openRegistrationAuthority(config());
      try {
        const r = await h.lifecycle[cmd](id, OPERATOR, actor());
        if (json()) console.log(JSON.stringify({ device: r.device, certificates: r.changed }));
        else
          console.log(`${r.device.id} ${r.device.state}${r.changed.length ? `; certificates: ${r.changed.map((c) => `${c.serial} ${c.status}${c.reason ? ` (${c.reason})` : ''}`).join(', ')}` : ''}`);
      } finally {
        await h.close();
      }
    });
}
devices
  .command('transfer <id>')
  .description('release and claim in one step: revoke its certificates (affiliationChanged), drop its credentials, set the new owner; prints the new one-time secret alone on stdout')
  .requiredOption('--to <owner>', 'the new owner')
  .option('--secret-ttl <duration>', 'lifetime of the new secret (default: enrollment.secretTtl)')
  .action(async (id: string, o: { to: string; secretTtl?: string }) => {
    const h = await openRegistrationAuthority(config());
    try {
      const r = await h.lifecycle.transfer(id, o.to, OPERATOR, actor(), o.secretTtl === undefined ? undefined : ttlOption(o.secretTtl));
      if (json()) console.log(JSON.stringify({ device: r.device, certificates: r.changed, secret: r.secret, secretExpiresAt: r.expiresAt.toISOString() }));
      else console.log(r.secret);
    } finally {
      await h.close();
    }
  });
devices
  .command('new-secret <id>')
  .description('a new one-time enrollment secret for a registered or active device (earlier secrets stop working, pending requests are cancelled, certificates stay valid); prints it alone on stdout')
  .option('--secret-ttl <duration>', 'lifetime of the new secret (default: enrollment.secretTtl)')
  .action(async (id: string, o: { secretTtl?: string }) => {
    const h = await openRegistrationAuthority(config());
    try {
      const r = await h.lifecycle.replaceSecret(id, OPERATOR, actor(), o.secretTtl === undefined ? undefined : ttlOption(o.secretTtl));
      if (json()) console.log(JSON.stringify({ device: r.device, secret: r.secret, secretExpiresAt: r.expiresAt.toISOString() }));
      else console.log(r.secret);
    } finally {
      await h.close();
    }
  });
devices
  .command('release <id>')
  .description('first half of a two-sided transfer: revoke its certificates (affiliationChanged), drop its credentials; the device is transferring until the new owner claims it')
  .requiredOption('--to <owner>', 'the new owner')
  .action(async (id: string, o: { to: string }) => {
    const h = await openRegistrationAuthority(config());
    try {
      const r = await h.lifecycle.release(id, o.to, OPERATOR, actor());
      if (json()) console.log(JSON.stringify({ device: r.device, certificates: r.changed }));
      else
        console.log(`${r.device.id} transferring to ${r.device.pendingOwner}${r.changed.length ? `; certificates: ${r.changed.map((c) => `${c.serial} ${c.status} (${c.reason})`).join(', ')}` : ''}`);
    } finally {
      await h.close();
    }
  });
for (const [cmd, method, what] of [
  ['claim', 'claim', 'second half of a transfer, on behalf of the new owner: it becomes the owner; prints the new one-time secret alone on stdout'],
  ['cancel-release', 'cancelRelease', 'take a release back before the claim: the device stays with its owner, registered; prints a new one-time secret alone on stdout'],
] as const) {
  devices
    .command(`${cmd} <id>`)
    .description(what)
    .option('--secret-ttl <duration>', 'lifetime of the new secret (default: enrollment.secretTtl)')
    .action(async (id: string, o: { secretTtl?: string }) => {
      const h = await openRegistrationAuthority(config());
      try {
        const r = await h.lifecycle[method](id, OPERATOR, actor(), o.secretTtl === undefined ? undefined : ttlOption(o.secretTtl));
        if (json()) console.log(JSON.stringify({ device: r.device, certificates: r.changed, secret: r.secret, secretExpiresAt: r.expiresAt.toISOString() }));
        else console.log(r.secret);
      } finally {
        await h.close();
      }
    });
}

program
  .command('revoke <serial>')
  .description('revoke one certificate (hex serial); idempotent')
  .requiredOption('--reason <reason>', `RFC 5280 reason: ${REVOCATION_REASONS.join(', ')}`)
  .action(async (serial: string, o: { reason: string }) => {
    const h = await openRegistrationAuthority(config());
    try {
      const r = await h.lifecycle.revoke(serial, o.reason, OPERATOR, actor());
      if (json()) console.log(JSON.stringify({ serial: r.cert.serial, status: r.cert.status, reason: r.cert.revocationReason, changed: r.changed }));
      else console.log(`${r.cert.serial} revoked (${r.cert.revocationReason})${r.changed ? '' : ' already'}`);
    } finally {
      await h.close();
    }
  });

const tokens = program.command('tokens').description('admin API bearer tokens');
tokens
  .command('create')
  .description('create a token; prints it alone on stdout (stored only as a hash)')
  .requiredOption('--scope <scope>', 'operator | owner:<name>')
  .option('--description <text>')
  .action(async (o: { scope: string; description?: string }) => {
    const h = await openRegistrationAuthority(config());
    try {
      const r = await h.access.createToken(o.scope, o.description ?? null, actor());
      if (json()) console.log(JSON.stringify({ id: r.record.id, scope: r.record.scope, token: r.token }));
      else console.log(r.token);
    } finally {
      await h.close();
    }
  });
tokens
  .command('list')
  .description('list tokens (never the tokens themselves)')
  .action(async () => {
    const h = await openRegistrationAuthority(config());
    try {
      const all = await collectItems((after, want) => h.access.listTokens({ after, limit: want }));
      printRecords(
        json(),
        all.items.map(({ hash: _h, ...t }) => t),
        ['id', 'scope', 'description', 'createdAt', 'revokedAt'],
      );
    } finally {
      await h.close();
    }
  });
tokens
  .command('revoke <id>')
  .description('revoke a token')
  .action(async (id: string) => {
    const h = await openRegistrationAuthority(config());
    try {
      const t = await h.access.revokeToken(id, actor());
      if (json()) console.log(JSON.stringify({ id: t.id, revokedAt: t.revokedAt }));
      else console.log(`${t.id} revoked`);
    } finally {
      await h.close();
    }
  });

program
  .command('audit')
  .description('the hash-chained audit log')
  .command('verify')
  .description('check the audit hash chain; exit 1 if a record was edited, removed or reordered')
  .action(async () => {
    const store = await openCheckedStore(config());
    try {
      const v = await verifyAuditChain(store);
      if (json()) console.log(JSON.stringify(v));
      else if (v.ok) console.log(`audit log intact: ${v.records} records, last hash ${v.lastHash}`);
      else console.log(`audit log BROKEN at record ${v.firstBad!.seq}: ${v.firstBad!.problem}`);
      if (!v.ok) process.exitCode = 1;
    } finally {
      await store.close();
    }
  });

program
  .command('crl')
  .description('certificate revocation lists')
  .command('export')
  .description('write CA certificates and current CRLs (the root CRL included) as an OpenSSL hashed directory (<hash>.0, <hash>.rN) for FreeRADIUS ca_path')
  .requiredOption('--dir <dir>', 'target directory')
  .option('--reload-cmd <cmd>', 'shell command run after the files changed (e.g. "systemctl restart freeradius": FreeRADIUS does not re-read CRLs on HUP)')
  .option('--watch', 'keep the directory current: re-export whenever a CRL is re-issued')
  .option('--root-only', 'trust only the root: leave the issuing CA certificate out (FreeRADIUS check_all_crl; devices send their chain)')
  .action(async (o: { dir: string; reloadCmd?: string; watch?: boolean; rootOnly?: boolean }) => {
    const cfg = config();
    const h = await openRegistrationAuthority(cfg);
    let last = '';
    const once = async () => {
      const numbers = await exportHashedDir(o.dir, h.caCerts, h.crl, await h.rootCrl(), { rootOnly: o.rootOnly });
      // during a rollover the other issuing CA's certificate and CRLs too: its devices are still in use
      const others = [];
      for (const x of h.otherIssuers) others.push(...(await exportHashedDir(o.dir, [x.der, x.root], x.crl, null, { rootOnly: o.rootOnly })).values());
      // after `ca rollover-root` the other root too, with its own CRL
      for (const r of h.otherRoots) {
        const n = exportRootToHashedDir(o.dir, r.der, await r.crl());
        if (n !== null) others.push(n);
      }
      const sig = [...numbers.values(), ...others].join(',');
      if (sig === last) return;
      last = sig;
      if (json()) console.log(JSON.stringify({ dir: o.dir, crls: Object.fromEntries([...numbers].map(([s, n]) => [s < 0 ? 'root' : s, n.toString()])) }));
      else console.log(`exported ${numbers.size + others.length} CRLs and ${(o.rootOnly ? 1 : h.caCerts.length + h.otherIssuers.length) + h.otherRoots.length} CA certificates to ${o.dir}`);
      if (o.reloadCmd) {
        const code = await runReload(o.reloadCmd);
        if (code !== 0) console.error(`device-ca: reload command exited ${code}`);
      }
    };
    try {
      await once();
      if (!o.watch) return;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => void once().catch((e) => console.error(`device-ca: export failed: ${(e as Error).message}`)), cfg.crl.checkInterval * 1000);
        const stop = () => (clearInterval(timer), resolve());
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    } finally {
      await h.close();
    }
  });

/**
 * openRootSide opens what a root-key command needs: the key backend (the root key is opened on first use)
 * and the checked store. `--out` runs on the offline machine holding the root key and a copy of the data
 * directory; nothing there is written but the file.
 */
const openRootSide = async (cfg: Config): Promise<{ keys: ReturnType<typeof openKeyBackend>; store: Store; close(): Promise<void> }> => {
  const keys = openKeyBackend(cfg);
  const store = await openCheckedStore(cfg).catch(async (e: unknown) => (await keys.close(), Promise.reject(e)));
  return { keys, store, close: async () => (await store.close(), await keys.close()) };
};
const printRootCrl = (what: string, info: RootCrlInfo & { ocsp?: Buffer | RootOcspImport }, file?: string): void => {
  const ocsp = info.ocsp === undefined ? undefined : Buffer.isBuffer(info.ocsp) ? `${file}.ocsp` : info.ocsp;
  const out = { number: info.number.toString(), thisUpdate: info.thisUpdate.toISOString(), nextUpdate: info.nextUpdate.toISOString(), revoked: info.entries.map((e) => String(e.serial)), file, ocsp };
  if (json()) console.log(JSON.stringify(out));
  else
    console.log(
      `${what}: root CRL number ${out.number}, next update ${out.nextUpdate}, ${out.revoked.length} revoked CA certificate(s)${file ? `, written to ${file} (and its root OCSP answer to ${ocsp}: copy both)` : ''}` +
        (ocsp === 'withdrawn'
          ? '; the root OCSP answer for the issuing CA disagreed with this CRL and was withdrawn: import the .ocsp file written beside the CRL'
          : ocsp
            ? `; root OCSP answer ${ocsp}`
            : ''),
    );
};
/** writeRootCrlFiles: the offline root machine's output, the CRL at `file` and the root OCSP answer signed with it at `file`.ocsp. */
const writeRootCrlFiles = (file: string, info: RootCrlInfo & { ocsp?: Buffer }): void => {
  // whole or not at all, and on disk when the command says so: the operator carries these files off the offline machine
  writeFileAtomic(file, info.der, 0o644);
  if (info.ocsp) writeFileAtomic(`${file}.ocsp`, info.ocsp, 0o644);
};

const caCmd = program.command('ca').description("the CA's own life cycle: root CRL, rolling over the root, rolling over, reissuing and revoking the issuing CA");
caCmd
  .command('root-crl')
  .description('sign a new root CRL with the root key (into the store, or --out a file on the offline root machine), or --import one signed elsewhere')
  .option('--out <file>', 'write the signed root CRL (DER) to this file and the root OCSP answer to <file>.ocsp instead of the store; copy both to the server and run `ca root-crl --import <file>`')
  .option('--import <file>', 'store a root CRL signed elsewhere (needs no root key): it must verify with the root certificate and be newer than the stored one')
  .option('--ocsp <file>', 'with --import: the root OCSP answer signed beside the CRL (default: <import file>.ocsp when it exists)')
  .option('--root <name>', 'after `ca rollover-root`: the root whose CRL to sign (default: the root in force; the old root keeps its own CRL until it expires)')
  .action(async (o: { out?: string; import?: string; root?: string; ocsp?: string }) => {
    const cfg = config();
    if (o.out && o.import) throw new DeviceCaError('bad-request', '--out and --import go separately: --out where the root key is, --import on the server');
    if (o.import) {
      const store = await openCheckedStore(cfg);
      try {
        let der: Buffer;
        try {
          der = fs.readFileSync(o.import);
        } catch (e) {
          throw new DeviceCaError('bad-request', `--import: ${(e as Error).message}`);
        }
        const pem = /-----BEGIN X509 CRL-----([^-]+)-----END X509 CRL-----/.exec(der.toString('latin1'));
        const ocspFile = o.ocsp ?? (fs.existsSync(`${o.import}.ocsp`) ? `${o.import}.ocsp` : undefined);
        let ocsp: Buffer | undefined;
        try {
          ocsp = ocspFile === undefined ? undefined : fs.readFileSync(ocspFile);
        } catch (e) {
          throw new DeviceCaError('bad-request', `--ocsp: ${(e as Error).message}`);
        }
        printRootCrl('imported', await importRootCrl(cfg, store, pem ? Buffer.from(pem[1], 'base64') : der, actor(), ocsp));
      } finally {
        await store.close();
      }
      return;
    }
    const h = await openRootSide(cfg);
    try {
      const info = await makeRootCrl(cfg, h.keys, h.store, { store: !o.out, actor: actor(), root: o.root });
      if (o.out) writeRootCrlFiles(o.out, info);
      printRootCrl('signed', info, o.out);
    } finally {
      await h.close();
    }
  });
caCmd
  .command('reissue-issuing')
  .description('give the current issuing key a new certificate from the root (same name, key and validity) that names the root CRL; running services serve it within 10 s')
  .action(async () => {
    const cfg = config();
    const h = await openRootSide(cfg);
    try {
      const r = await reissueIssuing(cfg, h.keys, h.store, actor());
      const x = new crypto.X509Certificate(r.der);
      if (json()) console.log(JSON.stringify({ serial: x.serialNumber.toLowerCase(), replaced: r.replaced, notAfter: new Date(x.validTo).toISOString() }));
      else console.log(`issuing CA certificate ${x.serialNumber.toLowerCase()} replaces ${r.replaced}; running services serve it within ${CA_DUTIES_INTERVAL_MS / 1000} s`);
    } finally {
      await h.close();
    }
  });
caCmd
  .command('revoke-issuing <name>')
  .description('revoke the issuing CA (every certificate of its key) on the root CRL at once; needs the root key. Then roll over and re-enroll (README runbook)')
  .requiredOption('--reason <reason>', `RFC 5280 reason, e.g. keyCompromise, cACompromise, superseded, cessationOfOperation`)
  .option('--out <file>', 'offline root machine: write the new root CRL to this file and the root OCSP answer to <file>.ocsp (import both on the server with `ca root-crl --import <file>`)')
  .action(async (name: string, o: { reason: string; out?: string }) => {
    if (crlReasonCode(o.reason) === undefined || o.reason === 'removeFromCRL' || o.reason === 'certificateHold')
      throw new DeviceCaError('bad-request', `--reason: ${o.reason} is not a reason to revoke a CA (RFC 5280 §5.3.1)`);
    const cfg = config();
    const h = await openRootSide(cfg);
    try {
      const r = await revokeIssuing(cfg, h.keys, h.store, name, o.reason as CrlReason, { store: !o.out, actor: actor() });
      if (o.out) writeRootCrlFiles(o.out, r.crl);
      printRootCrl(`revoked ${name} (${r.serials.join(', ')})`, r.crl, o.out);
    } finally {
      await h.close();
    }
  });

caCmd
  .command('rollover')
  .description('make a new issuing CA (new key) under the same root; it takes over new issuance at --at (default now) on every node; the old one keeps its CRLs and OCSP')
  .option('--at <time>', 'ISO 8601 time at which new issuance switches to the new issuing CA, e.g. 2027-01-15T09:00:00Z (default: now)')
  .action(async (o: { at?: string }) => {
    const at = o.at === undefined ? undefined : new Date(o.at);
    if (at && (!/^\d{4}-\d{2}-\d{2}T/.test(o.at!) || Number.isNaN(at.getTime()))) throw new DeviceCaError('bad-request', `--at: ${o.at} is not an ISO 8601 time such as 2027-01-15T09:00:00Z`);
    const cfg = config();
    const h = await openRootSide(cfg);
    try {
      const r = await rolloverIssuing(cfg, h.keys, h.store, { at, actor: actor() });
      const x = new crypto.X509Certificate(r.der);
      const out = { name: r.name, serial: x.serialNumber.toLowerCase(), replaces: r.replaces, activatesAt: r.activatesAt.toISOString(), notAfter: new Date(x.validTo).toISOString(), key: r.keyRef };
      if (json()) console.log(JSON.stringify(out));
      else console.log(`issuing CA ${out.name} (${out.serial}) takes over from ${out.replaces} at ${out.activatesAt}; running services pick it up within ${CA_DUTIES_INTERVAL_MS / 1000} s`);
    } finally {
      await h.close();
    }
  });

caCmd
  .command('rollover-root')
  .description(
    'make a new root CA (new key: on the token when keys.roles.root is PKCS#11, else a key file) and the link certificates ' +
      'OldWithNew and NewWithOld (RFC 7030 §4.1.3); needs the old root key. The issuing CA in force stays valid under the old root; ' +
      'the next `ca rollover` puts the new issuing CA under the new root. README: "Rolling over the root"',
  )
  .action(async () => {
    const cfg = config();
    const h = await openRootSide(cfg);
    try {
      const r = await rolloverRoot(cfg, h.keys, h.store, { actor: actor() });
      const x = new crypto.X509Certificate(r.der);
      const serial = (d: Buffer) => new crypto.X509Certificate(d).serialNumber.toLowerCase();
      const out = {
        name: r.name,
        serial: x.serialNumber.toLowerCase(),
        replaces: r.replaces,
        notAfter: new Date(x.validTo).toISOString(),
        key: r.keyRef,
        oldWithNew: serial(r.oldWithNew),
        newWithOld: serial(r.newWithOld),
        resumed: r.resumed,
      };
      if (json()) console.log(JSON.stringify(out));
      else
        console.log(
          `${r.resumed ? 'finished the interrupted root rollover: ' : ''}root CA ${out.name} (${out.serial}) replaces ${out.replaces}; link certificates OldWithNew ${out.oldWithNew} and NewWithOld ${out.newWithOld} ` +
            `are served in /cacerts within ${CA_DUTIES_INTERVAL_MS / 1000} s; next: \`device-ca ca rollover\` puts a new issuing CA under ${out.name}`,
        );
    } finally {
      await h.close();
    }
  });
caCmd
  .command('drop-root <name>')
  .description(
    'stop publishing a root `ca rollover-root` replaced (certificate, CRL, OCSP, link certificates) before it expires; needs no root key. ' +
      'Refused while an issuing CA under it is in force, pending, or retired with certificates that may be valid (not expired, not revoked)',
  )
  .action(async (name: string) => {
    const cfg = config();
    const store = await openCheckedStore(cfg);
    try {
      const r = await dropRoot(cfg, store, name, { actor: actor() });
      if (json()) console.log(JSON.stringify(r));
      else console.log(`root ${r.name} and ${r.linkCertificates} link certificate(s) are no longer published; running services drop them within ${CA_DUTIES_INTERVAL_MS / 1000} s`);
    } finally {
      await store.close();
    }
  });

program
  .command('keys')
  .description('CA keys')
  .command('list')
  .description('which key serves which role (pending and retired issuing keys too): PKCS#11 URI (RFC 7512) or key file, and the SHA-256 of its public key')
  .action(async () => {
    const cfg = config();
    const keys = openKeyBackend(cfg);
    const store = await openCheckedStore(cfg).catch(async (e: unknown) => (await keys.close(), Promise.reject(e)));
    try {
      const rows = await keyAssignments(cfg, keys, store);
      printRecords(json(), rows, ['role', 'ca', 'status', 'ref', 'spkiSha256']);
    } finally {
      await store.close();
      await keys.close();
    }
  });

const certs = program.command('certs').description('inspect issued certificates');
certs
  .command('list')
  .description('list certificates')
  .option('--device <id>', 'only this device')
  .addOption(new Option('--status <status>').choices(['valid', 'revoked']))
  .option('--limit <n>', 'at most n', '100')
  .option('--after <cursor>', 'page: continue after this cursor (printed on stderr when more remain)')
  .option('--all', 'every certificate, however many')
  .action(async (o: { device?: string; status?: 'valid'; limit: string; after?: string; all?: boolean }) => {
    const max = listLimit(o);
    const store = await openCheckedStore(config());
    try {
      const page = await collectItems((after, want) => store.listCertificates({ deviceId: o.device, status: o.status, limit: want, after }), max, o.after);
      printRecords(
        json(),
        page.items.map(({ der: _d, ...c }) => c),
        ['serial', 'deviceId', 'subject', 'status', 'notAfter'],
      );
      moreHint('certificates', page.next);
    } finally {
      await store.close();
    }
  });
certs
  .command('show <serial>')
  .description('show one certificate (hex serial), with its PEM')
  .action(async (serial: string) => {
    const store = await openCheckedStore(config());
    try {
      const c = await store.getCertificate(
        serial
          .toLowerCase()
          .replace(/^0x/, '')
          .replace(/:/g, '')
          .replace(/^0+(?=.)/, ''),
      );
      if (!c) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
      const { der, ...rest } = c;
      printRecord(json(), { ...rest, sha256: crypto.createHash('sha256').update(der).digest('hex'), pem: toPem(der, 'CERTIFICATE') });
    } finally {
      await store.close();
    }
  });

const requests = program.command('requests').description('the manual-approval queue (EST 202 Accepted)');
requests
  .command('list')
  .description('list enrollment requests (default: pending)')
  .addOption(new Option('--status <status>').choices(['pending', 'approved', 'rejected', 'issued', 'all']).default('pending'))
  .action(async (o: { status: string }) => {
    const store = await openCheckedStore(config());
    try {
      const status = o.status === 'all' ? undefined : (o.status as 'pending');
      const all = await collectItems((after, want) => store.listRequests({ status, after, limit: want }));
      printRecords(
        json(),
        all.items.map(({ csr: _c, ...r }) => r),
        ['id', 'deviceId', 'label', 'operation', 'status', 'createdAt'],
      );
    } finally {
      await store.close();
    }
  });
for (const [cmd, decision] of [
  ['approve', 'approved'],
  ['reject', 'rejected'],
] as const) {
  requests
    .command(`${cmd} <id>`)
    .description(`${cmd} a pending request; the device gets its answer when it retries`)
    .action(async (id: string) => {
      const h = await openRegistrationAuthority(config());
      try {
        const r = await h.ra.decideRequest(id, decision, `cli:${process.env.USER ?? 'operator'}`);
        const { csr: _c, ...rest } = r;
        if (json()) console.log(JSON.stringify(rest));
        else console.log(`${r.id} ${r.status}`);
      } finally {
        await h.close();
      }
    });
}

registerFirmwareCommands(program, { config, json, actor, openCheckedStore });
registerAgentCommands(program);
registerDeviceCommandCommands(program, { config, json, actor, openCheckedStore });
program
  .command('store')
  .description('the store itself')
  .command('copy')
  .description('copy a single-node CA (SQLite) into an empty shared Redis store, verify the copy by counts and the audit chain; stop the node first')
  .requiredOption('--from <path>', 'the SQLite store file, or the data directory holding device-ca.sqlite')
  .requiredOption('--to <url>', 'the Redis store: redis://[user:password@]host:port/db (or rediss://)')
  .action(async (o: { from: string; to: string }) => {
    await storeCopy(config(), o, { json: json(), actor: actor() });
  });

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    const err = isDeviceCaError(e) ? e : null;
    const message = err ? err.message : 'internal error: ' + (e as Error)?.message;
    if (json()) console.error(JSON.stringify({ error: { code: err?.code ?? 'internal', message } }));
    else console.error(`device-ca: ${message}`);
    // 3: configuration or data errors, a store that cannot be opened or is not this CA's included
    process.exitCode = err?.code === 'not-found' ? 4 : err?.code === 'config' || err?.code === 'store-unavailable' ? 3 : 1;
  }
}

void main();
