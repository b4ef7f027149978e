import * as crypto from 'node:crypto';
import { AuditLog } from '../../audit/audit-log';
import { Config } from '../../config/schema';
import { DeviceCaError } from '../../errors/device-ca-error';
import { TPM_AK_PROFILE } from '../../ca/certificate-authority';
import { Store } from '../../store/store';
import { BootstrapPolicy, bootstrapDeviceId, chainsToAnchor, withinValidity } from '../bootstrap-identity';
import { SecretKey, hashSecret, newEnrollmentSecret } from '../enrollment-secret';
import { Proofs } from '../enrollment-request';
import { DEVICE_ID, Principal } from '../principal';
import { Authenticator } from './authenticator';

type CertStore = Pick<Store, 'getCertificate' | 'getDevice' | 'createDevice'>;

/**
 * ClientCertificateAuthenticator tells a current device certificate (issued here: 'device-cert') from a
 * bootstrap (IDevID) one chaining to bootstrap.trustAnchors ('bootstrap'). A certificate byte-identical
 * to one this CA recorded is authentic without a signature check (TLS has proved possession of its key);
 * only the bootstrap path parses and verifies a chain. Which kind an operation needs is the RA's call.
 */
export class ClientCertificateAuthenticator implements Authenticator {
  readonly method = 'bootstrap-cert' as const;
  /** parsed: issuing CA certificates parsed once (keyed by their DER) */
  private readonly parsed = new Map<string, crypto.X509Certificate>();

  constructor(
    private readonly deps: {
      store: CertStore;
      /** issuingCas: the issuing CAs whose device certificates count (during a rollover, old and new) */
      issuingCas: () => Buffer[];
      bootstrap: BootstrapPolicy;
      bootstrapConfig: Config['bootstrap'];
      /** the server key the placeholder secret of an auto-registered device is stored under */
      secretKey: SecretKey;
      now: () => Date;
    },
  ) {}

  /** issuerOf: the served issuing CA whose name and key identifier the leaf names as its issuer, if any. */
  private issuerOf(leaf: crypto.X509Certificate): crypto.X509Certificate | undefined {
    for (const der of this.deps.issuingCas()) {
      const key = der.toString('latin1');
      let x = this.parsed.get(key);
      if (!x) this.parsed.set(key, (x = new crypto.X509Certificate(der)));
      if (leaf.checkIssued(x)) return x;
    }
    return undefined;
  }

  async authenticate(proofs: Proofs): Promise<Principal | null> {
    const c = proofs.clientCertificate;
    if (!c) return null;
    const { store, now: clock } = this.deps;
    const leaf = c.leaf;
    const now = clock();
    const issuer = this.issuerOf(leaf);
    if (issuer) {
      const serial = leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
      const rec = await store.getCertificate(serial);
      if (rec && rec.der.equals(leaf.raw)) {
        if (rec.status !== 'valid') throw new DeviceCaError('forbidden', 'certificate is revoked');
        if (!withinValidity(leaf, now)) throw new DeviceCaError('forbidden', 'certificate has expired');
        if (!rec.deviceId) throw new DeviceCaError('forbidden', 'certificate does not belong to a device');
        // an AK certificate names the device too, but an AK signs TPM evidence; it never authenticates a device
        if (rec.profile === TPM_AK_PROFILE) throw new DeviceCaError('forbidden', 'an attestation key certificate does not authenticate a device');
        return { kind: 'device-cert', deviceId: rec.deviceId, cert: rec, x509: leaf };
      }
      if (leaf.verify(issuer.publicKey)) throw new DeviceCaError('forbidden', 'certificate is not known to this CA');
    }
    let presented: crypto.X509Certificate[];
    try {
      presented = c
        .intermediates()
        .slice(0, 5)
        .map((d) => new crypto.X509Certificate(d));
    } catch {
      throw new DeviceCaError('unauthenticated', 'client certificate chain cannot be parsed');
    }
    const anchor = chainsToAnchor(leaf, presented, this.deps.bootstrap.anchors, now);
    if (!anchor) throw new DeviceCaError('unauthenticated', 'client certificate is not trusted');
    const deviceId = bootstrapDeviceId(leaf, this.deps.bootstrap);
    if (!deviceId || !DEVICE_ID.test(deviceId)) throw new DeviceCaError('forbidden', 'bootstrap certificate does not name a valid device id');
    const auto = this.deps.bootstrapConfig.autoRegisterOwner;
    if (auto !== undefined && !(await store.getDevice(deviceId))) {
      const hash = hashSecret(newEnrollmentSecret(), this.deps.secretKey());
      await store
        .createDevice(
          { id: deviceId, owner: auto, label: null, state: 'registered' },
          { hash, expiresAt: now },
          AuditLog.input('device.registered', `bootstrap:${anchor.subject.replace(/\n/g, ', ')}`, deviceId, { owner: auto, auto: true }),
        )
        .catch((e) => {
          if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e; // registered meanwhile by another worker
        });
    }
    return { kind: 'bootstrap', deviceId, anchor: anchor.fingerprint256 };
  }
}
