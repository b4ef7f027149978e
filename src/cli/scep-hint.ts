import { publicBaseUrl } from '../config/load-config';
import { Config } from '../config/schema';

/**
 * scepUrls: where a device registered for profile (null: any) enrolls over SCEP, one URL per scep.paths
 * entry serving that profile ("default" is /scep); none when SCEP is off. The device sends its one-time
 * secret as the CSR challengePassword (RFC 8894 §2.2), so `devices add` tells the operator these.
 */
export function scepUrls(cfg: Config, profile: string | null): string[] {
  if (!cfg.scep.enabled) return [];
  const base = `${publicBaseUrl(cfg)}/scep`;
  return Object.entries(cfg.scep.paths)
    .filter(([, p]) => profile === null || p.profile === profile)
    .map(([name]) => (name === 'default' ? base : `${base}/${name}`));
}

/** scepHint: the lines `devices add` writes to stderr (stdout keeps the secret alone) when SCEP is on. */
export function scepHint(cfg: Config, deviceId: string, profile: string | null): string[] {
  const urls = scepUrls(cfg, profile);
  if (urls.length === 0) return [];
  return [`SCEP: give the secret as challengePassword in a CSR with CN=${deviceId}, to ${urls.join(' or ')}`, `EST: give it as HTTP Basic ${deviceId}:<secret>`];
}
