import * as crypto from 'node:crypto';
import { DeviceCaError } from '../errors/device-ca-error';

/**
 * firmwareChainOf reads a device's firmware chain (the certificates it trusts for releases and signed
 * commands): the self-signed root, and the firmware signer CA: the CA certificate at the bottom of the
 * chain that reaches that root directly or through link certificates in the chain (RFC 4210 §4.4). After
 * `ca rollover-root` a device that trusts only the old root holds the signer CA, OldWithNew and the old
 * root (the server's `ca/firmware-chain-<root>.pem`); before, or for a device given the new root, the
 * signer CA and its root (`ca/firmware-chain.pem`). A signer (end-entity) certificate in the file is
 * ignored. Error: 'bad-request' when no such pair is there.
 */
export function firmwareChainOf(chain: Buffer[]): { root: crypto.X509Certificate; signerCa: crypto.X509Certificate } {
  const certs = chain.map((c) => new crypto.X509Certificate(c));
  const selfSigned = (c: crypto.X509Certificate): boolean => c.checkIssued(c) && c.verify(c.publicKey);
  const issuedBy = (c: crypto.X509Certificate, i: crypto.X509Certificate): boolean => c !== i && i.ca && c.checkIssued(i) && c.verify(i.publicKey);
  const root = certs.find(selfSigned);
  // links: at most two steps (one rollover each) between the signer CA and the root
  const reaches = (c: crypto.X509Certificate, steps: number): boolean =>
    root !== undefined && (issuedBy(c, root) || (steps > 0 && certs.some((i) => i !== root && !selfSigned(i) && issuedBy(c, i) && reaches(i, steps - 1))));
  const signerCa = certs.find((c) => c !== root && c.ca && !selfSigned(c) && !certs.some((o) => o.ca && issuedBy(o, c)) && reaches(c, 2));
  if (!root || !signerCa) throw new DeviceCaError('bad-request', 'the chain must hold the firmware signer CA and the root that issued it (or a link certificate to it)');
  return { root, signerCa };
}
