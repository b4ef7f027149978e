import { Command, Option } from 'commander';
import { agentEnroll, DEFAULT_HANDLES } from '../agent/agent-enroll';
import { agentRenew } from '../agent/agent-renew';
import { agentUpdate } from '../agent/agent-update';
import { agentCommand } from '../agent/agent-command';
import { DEVICE_KEY_ALGORITHMS, DeviceKeyAlgorithm } from '../agent/attested-key';
import { parseHardwareList } from '../cms/firmware-attributes';
import { DEFAULT_TCTI, EkAlgorithm, parseHandle } from '../agent/tpm-tools';
import { DeviceCaError } from '../errors/device-ca-error';

const TPM_HELP = `
The TPM is the one TPM2TOOLS_TCTI names (default ${DEFAULT_TCTI}; also /dev/tpm0, swtpm:host=..,port=..,
mssim:..., tabrmd). enroll works under all of them (it speaks the credential activation to device, swtpm and
mssim TCTIs itself); renew signs TLS with the TPM key, which needs a resource manager: /dev/tpmrm0 or tabrmd.
Needs tpm2-tools 5.4+ (tpm2_createek, tpm2_createak, tpm2_activatecredential, tpm2_send, tpm2_sign, ...) and,
for renew, openssl 3 with the tpm2 provider (Debian: tpm2-tools tpm2-openssl openssl). README "Device agent".
Files in --out: cert.pem (the device certificate), chain.pem (it and the CA intermediates), ak.pem (the AK
certificate), agent.json (device, EST URL, TPM handles). The private key never leaves the TPM: openssl
reaches it as -provider tpm2 -key handle:<agent.json keyHandle>.
Exit status: 0 done; 1 refused or failed (the server's reason or the TPM's is printed); 4 nothing enrolled in --out.`;

const UPDATE_HELP = `
Checks, in order: the firmware signer CA's counter-signature (--firmware-chain), every approval over the image
and the roles (--roles), the hardware (--hardware), the package name, and the version against the one in
<out>/firmware.json (RFC 4108 anti-rollback: a lower version is refused). An encrypted release is opened
with the device key in the TPM (TPM2_ECDH_ZGen for a P-256 key, TPM2_RSA_Decrypt with OAEP-SHA-256 for an
RSA key, --key-alg rsa2048): the key must have been enrolled with --key-decrypt. After a root rollover, a
device that trusts only the other root takes <data>/ca/firmware-chain-<root name>.pem as --firmware-chain.
After installing, it posts an RFC 4108 load receipt signed by the TPM key (hwType: --hardware's type) to
/firmware/<name>/<version>/receipt; a receipt the server did not record is a warning, posted again next run.
Exit status: 0 installed, or nothing newer than the installed version; 1 refused (the reason is printed:
a signature, a missing role, another hardware, a downgrade, a key that cannot decrypt) or failed;
4 no release of that name for this device, or nothing enrolled in --out. docs/firmware.md "Device agent".`;

/** EnrollFlags: the options of `agent enroll` as commander parses them. */
type EnrollFlags = {
  est: string;
  device: string;
  secret: string;
  trust: string;
  out: string;
  ekCert?: string;
  ekChain?: string[];
  ekAlg?: EkAlgorithm;
  akHandle: string;
  keyHandles: string;
  force?: boolean;
  keyDecrypt?: boolean;
  keyAlg?: DeviceKeyAlgorithm;
};

/**
 * registerAgentCommands adds `device-ca agent enroll|renew`, the reference device client of TPM-attested
 * enrollment (src/agent/). It needs no data directory or config: it runs on the device.
 */
export function registerAgentCommands(program: Command): void {
  const agent = program.command('agent').description('the device side: enroll a TPM-resident key over EST with TPM attestation, and renew it').addHelpText('after', TPM_HELP);
  agent
    .command('enroll')
    .description('register the TPM attestation key (AK), create a key in the TPM, have the AK certify it, and enroll it (simpleenroll)')
    .requiredOption('--est <url>', 'EST base URL including the label, e.g. https://ca.example:8443/.well-known/est/tpm')
    .requiredOption('--device <id>', 'the device id registered at the CA')
    .requiredOption('--secret <secret>', 'the one-time enrollment secret of the device')
    .requiredOption('--trust <pem>', "the CA chain (PEM) the server's TLS certificate and the issued certificate must chain to")
    .requiredOption('--out <dir>', 'where cert.pem, chain.pem, ak.pem and agent.json go (written only on success)')
    .option('--ek-cert <file>', 'the EK certificate (DER or PEM) for a TPM without one in NV index (that of the --ek-alg EK)')
    .option('--ek-chain <file...>', "the EK certificate's issuing CAs, if the CA does not hold them")
    .addOption(
      new Option('--ek-alg <alg>', 'which TCG default EK: rsa (RSA 2048, certificate in NV 0x01c00002), ecc (P-256, NV 0x01c0000a) or ecc384 (P-384, NV 0x01c00016)')
        .choices(['rsa', 'ecc', 'ecc384'])
        .default('rsa'),
    )
    .option('--ak-handle <handle>', 'persistent handle for the attestation key', DEFAULT_HANDLES.ak)
    .option('--key-handles <a,b>', 'the two persistent handles the device key alternates between on renewal', DEFAULT_HANDLES.keys.join(','))
    .option('--force', 'replace objects already persistent at those handles (an earlier enrollment: its certificate stops working)')
    .option('--key-decrypt', 'make the device key a decrypt key too, so encrypted firmware can be opened in the TPM (the profile needs tpmKeyDecrypt: true)')
    .addOption(
      new Option('--key-alg <alg>', 'the device key: ecc256 (P-256; firmware opened by ECDH) or rsa2048 (RSA 2048; firmware opened by RSA-OAEP with SHA-256)')
        .choices([...DEVICE_KEY_ALGORITHMS])
        .default('ecc256'),
    )
    .addHelpText('after', TPM_HELP)
    .action(async (o: EnrollFlags) => {
      const slots = o.keyHandles.split(',').map((h) => parseHandle(h.trim(), '--key-handles'));
      if (slots.length !== 2 || slots[0] === slots[1]) throw new DeviceCaError('bad-request', '--key-handles: two different handles, comma-separated');
      const r = await agentEnroll({ ...o, akHandle: parseHandle(o.akHandle, '--ak-handle'), keySlots: [slots[0], slots[1]] });
      console.log(`enrolled: ${r.certFile} (serial ${r.serial})`);
    });
  agent
    .command('renew')
    .description('a new TPM key certified by the AK, re-enrolled (simplereenroll) with the current certificate; cert.pem replaced only on success')
    .option('--est <url>', 'EST base URL including the label (default: the one recorded at enrollment)')
    .requiredOption('--trust <pem>', 'the CA chain (PEM)')
    .requiredOption('--out <dir>', 'the directory "agent enroll" wrote')
    .addHelpText('after', TPM_HELP)
    .action(async (o: { est?: string; trust: string; out: string }) => {
      const r = await agentRenew(o);
      console.log(`renewed: ${r.certFile} (serial ${r.serial})`);
    });
  agent
    .command('command')
    .description(
      'carry out a signed device command, from a file ("device-ca devices command --out") or fetched from the service (--fetch, signed over a fresh nonce, reported back): retire = evict the TPM objects and delete the identity files; transfer = that, then enroll again',
    )
    .option('--in <file>', 'the command (DER CMS)')
    .option('--fetch', "fetch this device's pending command over TLS with the device key (GET /device-command), carry it out and post a signed report")
    .requiredOption('--firmware-chain <pem>', "the firmware signer CA and root (PEM; the server's <data>/ca/firmware-chain.pem)")
    .requiredOption('--out <dir>', 'the directory "agent enroll" wrote')
    .option('--trust <pem>', 'the CA chain (PEM), as for enroll: needed by --fetch and by a transfer')
    .option('--secret <secret>', "transfer: the one-time secret of the new owner's claim")
    .option('--ek-cert <file>', 'transfer: as for enroll (the EK algorithm is the one agent.json recorded)')
    .option('--ek-chain <file...>', 'transfer: as for enroll')
    .addHelpText(
      'after',
      "\nWith --fetch and no command pending: prints so, exit 0. A report the server did not record is a warning on stderr (the device has acted).\nExit status: 0 done; 1 refused (not signed by the signer CA, for another device, expired, not over this agent's nonce) or failed; 4 nothing enrolled in --out.",
    )
    .action(async (o: { in?: string; fetch?: boolean; firmwareChain: string; out: string; secret?: string; trust?: string; ekCert?: string; ekChain?: string[] }) => {
      const r = await agentCommand(o);
      if (r.command === null) {
        console.log(`no command for device ${r.device}`);
        return;
      }
      console.log(`${r.command.command}: device ${r.command.device}: evicted ${r.evicted.length ? r.evicted.join(', ') : 'nothing'} from the TPM, identity files deleted`);
      if (r.enrolled) console.log(`enrolled again for ${r.command.newOwner ?? ''}: ${o.out}/cert.pem (serial ${r.enrolled})`);
      if (r.report?.posted) console.log(`report recorded: ${r.report.outcome}`);
      else if (r.report) process.stderr.write(`device-ca agent: the report was not recorded (${r.report.reason})\n`);
    });
  agent
    .command('update')
    .description('download the latest release of a firmware over TLS with the TPM key, verify it as a device must, decrypt it in the TPM, refuse a downgrade, write the image')
    .requiredOption('--check', 'check for a newer release and install it (the only mode so far)')
    .option('--est <url>', 'EST base URL; its origin serves /firmware/ (default: the one recorded at enrollment)')
    .requiredOption('--trust <pem>', "the CA chain (PEM) the server's TLS certificate must chain to")
    .requiredOption('--firmware-chain <pem>', "the firmware signer CA and root (PEM; the server's <data>/ca/firmware-chain.pem)")
    .requiredOption('--out <dir>', 'the directory "agent enroll" wrote; firmware.json there remembers the installed versions')
    .requiredOption('--name <id>', 'the firmware name')
    .option('--image-out <file>', 'where to write the image (default <out>/firmware/<name>.bin)')
    .option('--roles <list>', 'the roles of the policy', 'manufacturer,developer,administrator')
    .option('--require <m>', 'how many of --roles must have approved (M-of-N; default all)')
    .option('--hardware <oid:serial>', "this device's hardware module type and serial: refuse a package for other hardware")
    .addHelpText('after', UPDATE_HELP)
    .action(async (o: { est?: string; trust: string; firmwareChain: string; out: string; name: string; imageOut?: string; roles: string; require?: string; hardware?: string }) => {
      if (o.require !== undefined && !/^[1-9][0-9]{0,2}$/.test(o.require)) throw new DeviceCaError('bad-request', '--require must be a positive integer');
      const roles = o.roles
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r.length > 0);
      const hardware = o.hardware === undefined ? undefined : parseHardwareList(o.hardware)[0];
      const r = await agentUpdate({ ...o, roles, require: o.require === undefined ? undefined : Number(o.require), hardware });
      if (r.outcome === 'up-to-date') console.log(`${r.name}: version ${r.version} is installed, nothing newer`);
      else console.log(`${r.name}: installed version ${r.version}${r.previous === null ? '' : ` (was ${r.previous})`}${r.encrypted ? ', decrypted in the TPM' : ''}: ${r.image}`);
      if (r.receipt?.posted) console.log(`${r.name}: load receipt of version ${r.version} recorded`);
      else if (r.receipt) process.stderr.write(`device-ca agent: ${r.name}: the load receipt was not recorded (${r.receipt.reason}); the next "agent update --check" posts it again\n`);
    });
}
