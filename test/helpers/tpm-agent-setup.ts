import { RunningService, startService } from './service-process';
import { provisionSwTpm, startSwTpm, SwTpm } from './swtpm';
import { makeTmpDir, TmpDir } from './tmp';
import { startAbrmd, TpmAbrmd } from './tpm-abrmd';

/**
 * tpm-agent-setup: what every device agent interop test starts before its first case: a provisioned swtpm
 * (optionally behind tpm2-abrmd, the device's /dev/tpmrm0), and the BUILT service trusting that swtpm's EK
 * CA (`attestation.ekRoots`); the EK issuing CA is written where `agent enroll --ek-chain` reads it.
 */
export interface TpmAgentSetup {
  /** tmp: the test's scratch directory (tpm-roots/, ek-issuer.pem) */
  tmp: TmpDir;
  tpm: SwTpm;
  /** rm: tpm2-abrmd in front of the swtpm, when asked for */
  rm: TpmAbrmd | undefined;
  svc: RunningService;
  /** ekChain: the file with swtpm's EK issuing CA, for `agent enroll --ek-chain` */
  ekChain: string;
  /** stop ends what started, last started first, and removes the directories */
  stop(): Promise<void>;
}

/**
 * startTpmAgentSetup starts swtpm (and tpm2-abrmd when `abrmd`) and the service; `configYaml` is appended
 * to the service's configuration after the `attestation.ekRoots` line (more top-level keys, not more
 * `attestation` keys). If a step fails, what had started is stopped before the error is thrown.
 */
export async function startTpmAgentSetup(opts: { tmpPrefix: string; abrmd: boolean; configYaml?: string }): Promise<TpmAgentSetup> {
  const tmp = makeTmpDir(opts.tmpPrefix);
  const prov = provisionSwTpm();
  let tpm: SwTpm | undefined;
  let rm: TpmAbrmd | undefined;
  let svc: RunningService | undefined;
  const stop = async () => {
    await svc?.stop();
    await rm?.stop();
    await tpm?.stop();
    prov.cleanup();
    tmp.cleanup();
  };
  try {
    tpm = await startSwTpm(prov);
    if (opts.abrmd) rm = await startAbrmd(tpm);
    tmp.write('tpm-roots/swtpm-root.pem', tpm.ekRootPem);
    const ekChain = tmp.write('ek-issuer.pem', tpm.ekIssuerPem);
    svc = await startService({ configYaml: [`attestation:\n  ekRoots: [${JSON.stringify(tmp.file('tpm-roots'))}]`, opts.configYaml ?? '', ''].join('\n') });
    return { tmp, tpm, rm, svc, ekChain, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
