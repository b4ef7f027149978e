import * as crypto from 'node:crypto';
import { Config } from '../config/schema';

/**
 * bootstrap-identity: maps a manufacturer (IDevID) certificate to a device id under the configured
 * rule, and checks it chains to one of the configured bootstrap trust anchors.
 */
export interface BootstrapPolicy {
  anchors: crypto.X509Certificate[];
  deviceIdFrom: Config['bootstrap']['deviceIdFrom'];
  deviceIdPattern?: RegExp;
}

/** chainsToAnchor walks leaf -> intermediates -> anchor by signature, at most 5 links, all within validity. */
export function chainsToAnchor(leaf: crypto.X509Certificate, presented: crypto.X509Certificate[], anchors: crypto.X509Certificate[], now: Date): crypto.X509Certificate | null {
  const anchorFps = new Set(anchors.map((a) => a.fingerprint256));
  const pool = [...anchors, ...presented];
  let cur = leaf;
  for (let depth = 0; depth < 5; depth++) {
    if (!withinValidity(cur, now)) return null;
    const next = pool.find((c) => c.fingerprint256 !== cur.fingerprint256 && cur.checkIssued(c) && cur.verify(c.publicKey));
    if (!next) return null;
    if (anchorFps.has(next.fingerprint256)) return withinValidity(next, now) ? next : null;
    cur = next;
  }
  return null;
}

export function withinValidity(c: crypto.X509Certificate, now: Date): boolean {
  return new Date(c.validFrom) <= now && now <= new Date(c.validTo);
}

/** subjectAttribute reads one attribute from Node's multi-line subject string. */
function subjectAttribute(c: crypto.X509Certificate, key: string): string | undefined {
  for (const line of c.subject.split('\n')) {
    const i = line.indexOf('=');
    if (line.slice(0, i) === key) return line.slice(i + 1);
  }
  return undefined;
}

function sanValue(c: crypto.X509Certificate, prefix: 'URI:' | 'DNS:'): string | undefined {
  return (c.subjectAltName ?? '')
    .split(', ')
    .find((s) => s.startsWith(prefix))
    ?.slice(prefix.length);
}

/** bootstrapDeviceId applies the configured mapping; undefined when the certificate lacks the field. */
export function bootstrapDeviceId(c: crypto.X509Certificate, p: BootstrapPolicy): string | undefined {
  const raw =
    p.deviceIdFrom === 'subject.CN'
      ? subjectAttribute(c, 'CN')
      : p.deviceIdFrom === 'subject.serialNumber'
        ? subjectAttribute(c, 'serialNumber')
        : sanValue(c, p.deviceIdFrom === 'san.uri' ? 'URI:' : 'DNS:');
  if (raw === undefined) return undefined;
  if (!p.deviceIdPattern) return raw;
  const m = p.deviceIdPattern.exec(raw);
  return m?.[1];
}
