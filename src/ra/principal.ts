import * as crypto from 'node:crypto';
import { CertificateRecord } from '../store/store';

/**
 * Principal is who an authenticator found behind a request:
 * - secret: a device with an unspent one-time secret;
 * - secret-repeat: a device presenting a secret it spent within enrollment.retryWindow on certSerial
 *   (the RA answers with that same certificate if the request is the same, else refuses);
 * - bootstrap: a device with a manufacturer (IDevID) certificate chaining to a bootstrap trust anchor;
 * - device-cert: a device with a current certificate this CA issued.
 */
export type Principal =
  | { kind: 'secret'; deviceId: string; secretId: number }
  | { kind: 'secret-repeat'; deviceId: string; secretId: number; certSerial: string }
  | { kind: 'bootstrap'; deviceId: string; anchor: string }
  | { kind: 'device-cert'; deviceId: string; cert: CertificateRecord; x509: crypto.X509Certificate };

/** principalName is the actor recorded in the audit log. */
export function principalName(p: Principal): string {
  return p.kind === 'secret' || p.kind === 'secret-repeat' ? `secret:${p.deviceId}` : p.kind === 'bootstrap' ? `bootstrap:${p.deviceId}` : `cert:${p.cert.serial}`;
}

/** DEVICE_ID: no ':' (HTTP Basic user names cannot carry it), no spaces, bounded. */
export const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
