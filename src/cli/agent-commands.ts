import { Command, Option } from 'commander';
import { agentEnroll, DEFAULT_HANDLES } from '../agent/agent-enroll';
import { agentRenew } from '../agent/agent-renew';
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
}
