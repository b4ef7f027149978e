import { Command } from 'commander';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { hardwareText, parseHardwareList } from '../cms/firmware-attributes';
import { fileSource, hashSource } from '../cms/byte-source';
import { fdSink, wholeFile } from '../cms/file-range';
import { createFirmwarePackageFile, FirmwarePackageFile, signFirmwarePackageFile, StreamedOutput } from '../cms/firmware-package-file';
import { buildFirmwareReceipt, FirmwareReceipt } from '../cms/firmware-receipt';
import { openGroupKeyEnvelope } from '../cms/firmware-group-key';
import { verifyFirmwareReleaseFile } from '../cms/firmware-release-verify';
import { CMS_OID } from '../cms/cms-algorithms';
import { pemBlocks, toPem } from '../ca/pem';
import { Config } from '../config/schema';
import { writeFileAtomic, writeFileAtomicWith } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { openKeyBackend } from '../keys/open-key-backend';
import { algorithmOfKey, softwareSigningKey } from '../keys/software-key-backend';
import { DEFAULT_ROLES, FirmwareReleases } from '../ra/firmware-release';
import { FirmwareReceipts } from '../ra/firmware-receipts';
import { Store } from '../store/store';
import { printRecords } from './output';

/** FirmwareCliContext: what the firmware commands take from the main program. */
export interface FirmwareCliContext {
  config: () => Config;
  json: () => boolean;
  actor: () => string;
  openCheckedStore: (cfg: Config) => Promise<Store>;
}

/**
 * registerFirmwareCommands adds `signers` and `firmware` (issue 13, docs/firmware.md). `firmware create`
 * and `firmware sign` work offline, on a signer's machine without the data directory; `signers`,
 * `firmware policy` and `firmware release` use the store.
 */
export function registerFirmwareCommands(program: Command, ctx: FirmwareCliContext): void {
  const withReleases = async <T>(fn: (r: FirmwareReleases) => Promise<T>): Promise<T> => {
    const cfg = ctx.config();
    const store = await ctx.openCheckedStore(cfg);
    const keys = openKeyBackend(cfg);
    try {
      return await fn(new FirmwareReleases(cfg, store, keys));
    } finally {
      await store.close();
      await keys.close();
    }
  };

  const withReceipts = async <T>(fn: (r: FirmwareReceipts) => Promise<T>): Promise<T> => {
    const store = await ctx.openCheckedStore(ctx.config());
    try {
      return await fn(new FirmwareReceipts(store));
    } finally {
      await store.close();
    }
  };

  const signers = program.command('signers').description('firmware signers: code-signing certificates from the signer CA, one role each');
  signers
    .command('add <name>')
    .description('certify a signer key (from its CSR) for a role; prints the signer certificate (PEM). The first signer creates the signer CA (needs the root key)')
    .requiredOption('--role <role>', 'manufacturer, developer, administrator or any other role a policy names')
    .requiredOption('--csr <file>', 'PKCS#10 request of the signer key (PEM or DER), made on the signer machine')
    .action(async (name: string, o: { role: string; csr: string }) => {
      const csr = readPemOrDer(o.csr, 'CERTIFICATE REQUEST');
      const r = await withReleases((f) => f.addSigner({ name, role: o.role, csr, actor: ctx.actor() }));
      if (ctx.json()) console.log(JSON.stringify({ name, role: o.role, serial: r.serial, certificate: toPem(r.certificate, 'CERTIFICATE') }));
      else process.stdout.write(toPem(r.certificate, 'CERTIFICATE'));
    });
  signers
    .command('list')
    .description('list registered signers')
    .action(async () => printRecords(ctx.json(), await withReleases((f) => f.listSigners()), ['name', 'role', 'serial', 'createdAt']));

  const firmware = program.command('firmware').description('signed and encrypted firmware packages (CMS, RFC 4108)');
  firmware
    .command('create')
    .description('make an unsigned firmware package (works offline)')
    .requiredOption('--image <file>', 'the firmware image')
    .requiredOption('--name <id>', 'package name (letters, digits, . _ -) or an OID')
    .requiredOption('--version <n>', 'version, a non-negative integer (devices refuse a lower one)')
    .option('--hardware <list>', 'target hardware modules: oid[:serial],...')
    .requiredOption('--out <file>', 'the package (DER CMS)')
    .action(async (o: { image: string; name: string; version: string; hardware?: string; out: string }) => {
      if (!/^(0|[1-9][0-9]{0,14})$/.test(o.version)) throw new DeviceCaError('bad-request', '--version must be a non-negative integer');
      const metadata = { name: o.name, version: Number(o.version), hardware: parseHardwareList(o.hardware) };
      // streamed: the image is copied from its file into the package, never held in memory whole
      const bytes = await withOpenFile(o.image, (image) => writeFileAtomicWith(o.out, (fd) => createFirmwarePackageFile(wholeFile(image), metadata, fdSink(fd)), 0o644));
      if (ctx.json()) console.log(JSON.stringify({ out: o.out, bytes }));
    });
  firmware
    .command('sign')
    .description('add your signature to a package (works offline); prints what you signed')
    .requiredOption('--in <file>', 'the package')
    .requiredOption('--cert <file>', 'your signer certificate (PEM; the chain may follow it)')
    .requiredOption('--key <key>', 'your private key: a PEM file, or a pkcs11: URI (keys.pkcs11 settings)')
    .requiredOption('--out <file>', 'the package with your signature added')
    .action(async (o: { in: string; cert: string; key: string; out: string }) => {
      const certs = pemBlocks(readFile(o.cert).toString('latin1'));
      if (certs.length === 0) throw new DeviceCaError('bad-request', `${o.cert} holds no PEM certificate`);
      // streamed: the image is hashed and copied from the input file, never held in memory whole
      const { before, sha256 } = await withOpenFile(o.in, async (input) => {
        const withKey = async (key: SigningKey): Promise<StreamedOutput & { before: FirmwarePackageFile }> => {
          if (!key.spki.equals(Buffer.from(new crypto.X509Certificate(certs[0]).publicKey.export({ type: 'spki', format: 'der' }))))
            throw new DeviceCaError('bad-request', 'the key does not belong to the certificate');
          return signFirmwarePackageFile(input, { certificate: certs[0], key, chain: certs.slice(1) }, new Date());
        };
        let out: StreamedOutput & { before: FirmwarePackageFile };
        if (o.key.startsWith('pkcs11:')) {
          const keys = openKeyBackend(ctx.config());
          try {
            out = await withKey(await keys.load(o.key));
          } finally {
            await keys.close();
          }
        } else {
          let k: crypto.KeyObject;
          try {
            k = crypto.createPrivateKey({ key: readFile(o.key), passphrase: process.env.DEVICE_CA_SIGNER_KEY_PASSPHRASE });
          } catch (e) {
            throw new DeviceCaError('bad-request', `cannot read the key ${o.key} (encrypted? set DEVICE_CA_SIGNER_KEY_PASSPHRASE)`, { cause: e });
          }
          out = await withKey(softwareSigningKey(k, algorithmOfKey(k), o.key));
        }
        writeFileAtomicWith(o.out, (fd) => out.writeTo(fdSink(fd)), 0o644);
        // the image's SHA-256 for the summary: hashed already unless every signature (and this key) uses SHA-384
        const sha256 = out.before.digests.digests.get('sha256') ?? hashSource(out.before.image, ['sha256']).get('sha256');
        return { before: out.before, sha256: sha256?.toString('hex') };
      });
      const m = before.metadata;
      const summary = { name: m.name, version: m.version, hardware: m.hardware, sha256, signers: before.signers.length + 1 };
      if (ctx.json()) console.log(JSON.stringify(summary));
      else console.log(`signed ${m.name} version ${m.version} (image sha256 ${summary.sha256}); ${summary.signers} signature(s)`);
    });
  const policy = firmware.command('policy').description('which roles must sign a release');
  policy
    .command('set')
    .description('set the roles that must all sign (default policy, or one owner’s)')
    .requiredOption('--roles <list>', 'comma-separated roles, e.g. manufacturer,developer,administrator')
    .option('--require <m>', 'how many distinct roles of --roles must sign (M-of-N; default: all)')
    .option('--owner <name>', 'the policy for this owner’s devices')
    .action(async (o: { roles: string; require?: string; owner?: string }) => {
      const roles = o.roles.split(',').map((r) => r.trim());
      const require = countOption(o.require, '--require');
      await withReleases((f) => f.setPolicy({ roles, require, owner: o.owner, actor: ctx.actor() }));
      if (ctx.json()) console.log(JSON.stringify({ owner: o.owner ?? null, roles, require: require ?? roles.length }));
    });
  firmware
    .command('verify')
    .description("check a release as a device does, offline: the CA's counter-signature, every approval and role, the version, the hardware; decrypt; write the image")
    .requiredOption('--in <file>', 'the release (DER CMS)')
    .requiredOption('--chain <file>', 'the firmware chain (PEM: signer CA and root, <data>/ca/firmware-chain.pem)')
    .option('--cert <file>', 'the device certificate (an encrypted release)')
    .option('--key <file>', 'the device private key (an encrypted release)')
    .option('--key-package <file>', 'a release to a group key: the key package the device fetched (GET /firmware/keys/<id>, DER), opened with --cert/--key')
    .option('--roles <list>', 'the roles of the policy', DEFAULT_ROLES.join(','))
    .option('--require <m>', 'how many distinct roles of --roles must have approved (M-of-N; default: all)')
    .option('--installed <version>', 'the installed version: refuse one not above it (anti-rollback)')
    .option('--hardware <oid:serial>', "this device's hardware module type and serial: refuse a package for other hardware")
    .requiredOption('--out <file>', 'where to write the image')
    .action(async (o: { in: string; chain: string; cert?: string; key?: string; keyPackage?: string; roles: string; require?: string; installed?: string; hardware?: string; out: string }) => {
      if ((o.cert === undefined) !== (o.key === undefined)) throw new DeviceCaError('bad-request', '--cert and --key go together');
      if (o.keyPackage !== undefined && o.cert === undefined) throw new DeviceCaError('bad-request', '--key-package is opened with the device certificate and key: give --cert and --key');
      if (o.installed !== undefined && !/^(0|[1-9][0-9]{0,15})$/.test(o.installed)) throw new DeviceCaError('bad-request', '--installed must be a non-negative integer');
      const chain = pemBlocks(readFile(o.chain).toString('latin1'), 'CERTIFICATE');
      const recipient = o.cert && o.key ? { certificate: readPemOrDer(o.cert, 'CERTIFICATE'), key: privateKeyOf(o.key) } : undefined;
      // a group release: the key package is opened as the device opens it (RFC 6031 inside an EnvelopedData to its certificate)
      const groupKey = o.keyPackage !== undefined && recipient ? openGroupKeyEnvelope(readFile(o.keyPackage), recipient) : undefined;
      const hardware = o.hardware === undefined ? undefined : parseHardwareList(o.hardware)[0];
      const roles = o.roles
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r.length > 0);
      const check = {
        chain,
        recipient,
        groupKey,
        roles,
        require: countOption(o.require, '--require'),
        installed: o.installed === undefined ? undefined : Number(o.installed),
        hardware,
        now: new Date(),
      };
      // streamed: the image goes to a temporary file beside --out, renamed over it only when every check passed
      const v = await withOpenFile(o.in, (release) => writeFileAtomicWith(o.out, (fd) => verifyFirmwareReleaseFile(release, check, fdSink(fd)), 0o600));
      if (ctx.json()) console.log(JSON.stringify({ ...v.metadata, encrypted: v.encrypted, ...(groupKey ? { groupKeyId: groupKey.id } : {}), approvals: v.approvals }));
      else
        console.log(
          `verified ${v.metadata.name} version ${v.metadata.version}${v.encrypted ? (groupKey ? ` (decrypted with group key ${groupKey.id})` : ' (decrypted)') : ''}, approved by ${v.approvals.map((a) => a.role).join(', ')}`,
        );
    });
  firmware
    .command('release')
    .description('check the policy and the signers, counter-sign as the CA and record the release; --encrypt-to encrypts the image to device certificates')
    .requiredOption('--in <file>', 'the signed package')
    .option('--encrypt-to <list>', 'device ids (comma-separated), or owner:<name> for every active device of an owner')
    .option(
      '--encrypt-to-group <group>',
      'owner:<name> or fleet: encrypt once under the group key (RFC 4108 decryptKeyID); each member fetches the key wrapped to its certificate (GET /firmware/keys/<id>)',
    )
    .requiredOption('--out <file>', 'the release (DER CMS)')
    .action(async (o: { in: string; encryptTo?: string; encryptToGroup?: string; out: string }) => {
      const to = o.encryptTo;
      const encryptTo = to === undefined ? undefined : to.startsWith('owner:') ? { owner: to.slice('owner:'.length) } : { deviceIds: to.split(',').map((d) => d.trim()) };
      // streamed: the package is read from its file and the release written into a temporary file beside
      // --out, renamed over it once it is complete and recorded (a refusal leaves no --out)
      const r = await withOpenFile(o.in, (input) =>
        withReleases((f) => f.release({ package: fileSource(wholeFile(input)), out: o.out, encryptTo, encryptToGroup: o.encryptToGroup, actor: ctx.actor() })),
      );
      if (ctx.json()) console.log(JSON.stringify(r.groupKeyId ? { ...r.record, group: o.encryptToGroup, groupKeyId: r.groupKeyId } : r.record));
      else
        console.log(
          `released ${r.record.name} version ${r.record.version}${r.record.recipients ? ` encrypted to ${r.record.recipients.length} device(s)` : ''}${r.groupKeyId ? ` under group key ${r.groupKeyId} (${o.encryptToGroup})` : ''}`,
        );
    });
  firmware
    .command('receipt')
    .description('make an RFC 4108 load receipt (or, with --error, a load error report) signed by the device key (works offline); POST it to /firmware/<name>/<version>/receipt over mTLS')
    .requiredOption('--name <id>', 'the package name')
    .requiredOption('--version <n>', 'the version loaded (or that failed to load)')
    .requiredOption('--cert <file>', 'the device certificate (PEM or DER)')
    .requiredOption('--key <file>', 'the device private key (PEM or DER PKCS#8)')
    .option('--serial <id>', "hwSerialNum: the device id (default: the certificate's CN)")
    .option('--hardware <oid>', 'hwType: the hardware module type', CMS_OID.genericHardware)
    .option('--error <code>', 'make a load error report with this RFC 4108 §4 error code (1-127, e.g. 23 decryptFailure, 99 otherError)')
    .requiredOption('--out <file>', 'the receipt (DER CMS)')
    .action(async (o: { name: string; version: string; cert: string; key: string; serial?: string; hardware: string; error?: string; out: string }) => {
      if (!/^(0|[1-9][0-9]{0,14})$/.test(o.version)) throw new DeviceCaError('bad-request', '--version must be a non-negative integer');
      if (o.error !== undefined && !/^[1-9][0-9]{0,2}$/.test(o.error)) throw new DeviceCaError('bad-request', '--error must be an RFC 4108 error code (1-127)');
      const certificate = readPemOrDer(o.cert, 'CERTIFICATE');
      const cert = new crypto.X509Certificate(certificate);
      const key = privateKeyOf(o.key);
      if (
        !crypto
          .createPublicKey(key)
          .export({ type: 'spki', format: 'der' })
          .equals(cert.publicKey.export({ type: 'spki', format: 'der' }))
      )
        throw new DeviceCaError('bad-request', 'the key does not belong to the certificate');
      const serial = o.serial ?? /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
      if (!serial) throw new DeviceCaError('bad-request', 'the certificate has no CN: name the device with --serial');
      const pkg = { name: o.name, version: Number(o.version) };
      const receipt: FirmwareReceipt =
        o.error === undefined
          ? { kind: 'loaded', hwType: o.hardware, hwSerial: serial, package: pkg }
          : { kind: 'error', hwType: o.hardware, hwSerial: serial, package: pkg, errorCode: Number(o.error) };
      const der = await buildFirmwareReceipt(receipt, { certificate, key: softwareSigningKey(key, algorithmOfKey(key), o.key) }, new Date());
      writeFileAtomic(o.out, der, 0o644);
      if (ctx.json()) console.log(JSON.stringify({ out: o.out, receipt: receipt.kind, device: serial, ...pkg }));
    });
  firmware
    .command('status <name>')
    .description('which devices run which version of a firmware (from their receipts): counts per version and per load error code over every device, then one page of devices')
    .option('--limit <n>', 'at most n device rows (1-1000)', '100')
    .option('--after <cursor>', 'page: continue after this cursor (printed on stderr when more remain)')
    .action(async (name: string, o: { limit: string; after?: string }) => {
      if (!/^[1-9][0-9]{0,3}$/.test(o.limit) || Number(o.limit) > 1000) throw new DeviceCaError('bad-request', '--limit must be an integer from 1 to 1000');
      const st = await withReceipts((r) => r.status(name, undefined, { limit: Number(o.limit), after: o.after }));
      if (ctx.json()) console.log(JSON.stringify(st));
      else {
        console.log(`${st.name}: released ${st.releases.map((r) => r.version).join(', ')}; ${st.summary.devices} device(s) reported`);
        for (const v of st.versions) console.log(`  version ${v.version}: ${v.devices} device(s)`);
        for (const e of st.summary.loadErrors) console.log(`  load error code ${e.code}: ${e.devices} device(s)`);
        printRecords(
          false,
          st.devices.map((d) => ({
            device: d.device,
            version: d.version ?? '-',
            loadedAt: d.loadedAt?.toISOString() ?? '-',
            error: d.error ? `code ${d.error.code} loading ${d.error.version}` : '-',
          })),
          ['device', 'version', 'loadedAt', 'error'],
        );
        if (st.errors.length > 0) console.log(`${st.errors.length} device(s) with a load error: ${st.errors.map((e) => e.device).join(', ')}`);
      }
      // on stderr, as the other lists do: stdout keeps its format
      if (st.next !== null) console.error(`device-ca: more devices: repeat with --after ${st.next}`);
    });
  firmware
    .command('list')
    .description('list releases, with the hardware each is for (oid[:serial],..., or any)')
    .action(async () => {
      // --json: `hardware` is always there, [] for any hardware; the table shows it as --hardware takes it
      const rows = (await withReleases((f) => f.listReleases())).map((r) => ({ ...r, hardware: r.hardware ?? [] }));
      if (ctx.json()) printRecords(true, rows, []);
      else
        printRecords(
          false,
          rows.map((r) => ({ ...r, hardware: hardwareText(r.hardware) })),
          ['name', 'version', 'sha256', 'releasedAt', 'hardware'],
        );
    });
}

/** countOption: an optional positive integer option (`--require`). */
function countOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]{0,3}$/.test(v)) throw new DeviceCaError('bad-request', `${name} must be a positive integer`);
  return Number(v);
}

/** openFile opens a file to read ('not-found' when it cannot be), for the commands that stream it. */
function openFile(f: string): number {
  try {
    return fs.openSync(f, 'r');
  } catch (e) {
    throw new DeviceCaError('not-found', `cannot read ${f}: ${(e as Error).message}`);
  }
}

/** withOpenFile runs fn with the file open to read, and closes it whatever happens. */
async function withOpenFile<T>(f: string, fn: (fd: number) => T | Promise<T>): Promise<T> {
  const fd = openFile(f);
  try {
    return await fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function readFile(f: string): Buffer {
  try {
    return fs.readFileSync(f);
  } catch (e) {
    throw new DeviceCaError('not-found', `cannot read ${f}: ${(e as Error).message}`);
  }
}

function readPemOrDer(f: string, label: string): Buffer {
  const b = readFile(f);
  const pem = pemBlocks(b.toString('latin1'), label);
  return pem.length > 0 ? pem[0] : b;
}

/** privateKeyOf: a PEM or DER (PKCS#8) private key file; 'bad-request' when it is not one. */
function privateKeyOf(f: string): crypto.KeyObject {
  const b = readFile(f);
  try {
    return b.includes('-----BEGIN') ? crypto.createPrivateKey(b) : crypto.createPrivateKey({ key: b, format: 'der', type: 'pkcs8' });
  } catch {
    throw new DeviceCaError('bad-request', `${f} is not a private key (PEM or DER PKCS#8)`);
  }
}
