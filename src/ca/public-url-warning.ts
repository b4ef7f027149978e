import { Config } from '../config/schema';
import { publicBaseUrl } from '../config/load-config';
import { crlUrl } from './certificate-authority';

/** LOOPBACK_HOSTS: bind addresses no other machine can reach. */
const LOOPBACK_HOSTS = new Set(['localhost', '::1', '[::1]', '0:0:0:0:0:0:0:1']);

/** isLoopbackHost: a listener bound here is reachable from this machine only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host.toLowerCase()) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * publicUrlWarning says what is wrong when publicUrl is not set while a listener is reachable from other
 * machines: every certificate then carries http://localhost:<port> as its CRL, OCSP and caIssuers URLs
 * for its whole life (they cannot be changed after issuance), and no relying party elsewhere can fetch
 * them. Returns null when publicUrl is set or every listener is loopback-only.
 */
export function publicUrlWarning(cfg: Config, caName: string): string | null {
  if (cfg.publicUrl !== undefined) return null;
  const open = (['https', 'http'] as const).filter((l) => !isLoopbackHost(cfg[l].host));
  if (open.length === 0) return null;
  const base = publicBaseUrl(cfg);
  const urls = [crlUrl(base, caName, 0), `${base}/ocsp`, `${base}/ca/${caName}.crt`];
  return (
    `publicUrl is not set while the ${open.map((l) => `${l} listener binds ${cfg[l].host}`).join(' and the ')}: ` +
    `certificates issued now carry ${urls.join(', ')} for their whole life; set publicUrl (DEVICE_CA_PUBLIC_URL) to the address relying parties reach`
  );
}
