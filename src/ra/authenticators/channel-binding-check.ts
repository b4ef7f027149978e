import * as crypto from 'node:crypto';
import { DeviceCaError } from '../../errors/device-ca-error';
import { ChannelBinding } from '../enrollment-request';

/**
 * checkChannelBinding is the proof of possession of RFC 7030 §3.5: the CSR's challengePassword must be
 * base64(tls-unique) of the connection (TLS 1.2, RFC 5929) or, on TLS 1.3, base64(tls-exporter) (RFC 9266),
 * so a CSR cannot be replayed over another client's connection. Compared in constant time.
 */
export function checkChannelBinding(challengePassword: string | null, binding: ChannelBinding | undefined): void {
  const expected = binding?.tlsUnique ?? binding?.tlsExporter;
  if (!expected) throw new DeviceCaError('forbidden', 'proof of possession needs a TLS channel binding');
  if (challengePassword === null) throw new DeviceCaError('forbidden', 'proof of possession required: challengePassword must carry the TLS channel binding');
  const got = Buffer.from(challengePassword.trim(), 'base64');
  if (got.length !== expected.length || !crypto.timingSafeEqual(got, expected))
    throw new DeviceCaError('forbidden', 'proof of possession failed: challengePassword does not match this TLS connection');
}
