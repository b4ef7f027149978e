import * as crypto from 'node:crypto';
import type { EnrollOperation } from '../store/store';

export type { EnrollOperation };

/**
 * Proofs are what a protocol adapter extracted from a request, not yet trusted: each kind is checked by
 * one authenticator under authenticators/. A new front door (SCEP challengePassword, TPM evidence) adds a
 * field here and an authenticator, nothing else in ra/.
 */
export interface Proofs {
  /** secret: a device id and its one-time enrollment secret (EST: HTTP Basic, RFC 7617) */
  secret?: { deviceId: string; secret: string };
  /**
   * clientCertificate: a certificate whose key the peer proved to hold: the TLS peer's certificate as the
   * TLS layer parsed it (or the signer of a SCEP RenewalReq, whose signature the adapter verified), and (only read on the
   * bootstrap path, since building it costs) the certificates the peer presented behind it.
   */
  clientCertificate?: { leaf: crypto.X509Certificate; intermediates: () => Buffer[] };
  /** channelBinding: values of the TLS connection, for RFC 7030 §3.5 proof of possession */
  channelBinding?: ChannelBinding;
}

/** ChannelBinding values of the TLS connection the request came over. */
export interface ChannelBinding {
  tlsUnique?: Buffer; // TLS 1.2, RFC 5929
  tlsExporter?: Buffer; // TLS 1.3, RFC 9266
}

/** EnrollRequest is the one protocol-neutral enrollment call: which profile, what operation, the CSR, the proofs. */
export interface EnrollRequest {
  profile: string;
  operation: EnrollOperation;
  /** csr: DER PKCS#10 (RFC 2986) */
  csr: Buffer;
  proofs: Proofs;
}

/**
 * EnrollOutcome: a certificate (and, for server-keygen, its key), or a pending manual approval. A pending
 * outcome names the device and, when a one-time secret authenticated the request, that secret: SCEP keeps
 * them so a CertPoll, which carries no secret, can finish the request (ra/scep-transactions.ts).
 */
export type EnrollOutcome =
  { status: 'issued'; serial: string; certificate: Buffer; privateKeyPkcs8?: Buffer } | { status: 'pending'; requestId: string; retryAfterSeconds: number; deviceId?: string; secretId?: number };
