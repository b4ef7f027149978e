import { Request } from 'express';
import { TLSSocket } from 'node:tls';
import { FirmwareRequester } from '../ra/firmware-distribution';

/**
 * requesterOf: the TLS client certificate, when the request came over TLS with one (the HTTPS listener;
 * on the plain listener the socket has no peer certificate). The firmware and device-command routes hand
 * it to the RA, which decides what that certificate may do.
 */
export function requesterOf(req: Request): FirmwareRequester {
  const sock = req.socket as TLSSocket;
  if (typeof sock.getPeerX509Certificate !== 'function') return {};
  const leaf = sock.getPeerX509Certificate();
  return leaf ? { clientCertificate: leaf } : {};
}
