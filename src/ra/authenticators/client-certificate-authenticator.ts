import * as crypto from 'node:crypto';
import { AuditLog } from '../../audit/audit-log';
import { Config } from '../../config/schema';
import { DeviceCaError } from '../../errors/device-ca-error';
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
  private readonly issuingX509: crypto.X509Certificate;

  constructor(
    private readonly deps: {
      store: CertStore;
      issuingCaDer: Buffer;
      bootstrap: BootstrapPolicy;
      bootstrapConfig: Config['bootstrap'];
      /** the server key the placeholder secret of an auto-registered device is stored under */
      secretKey: SecretKey;
      now: () => Date;
    },
  ) {
    this.issuingX509 = new crypto.X509Certificate(deps.issuingCaDer);
  }

  async authenticate(proofs: Proofs): Promise<Principal | null> {
    const c = proofs.clientCertificate;
    if (!c) return null;
    const { store, now: clock } = this.deps;
    const leaf = c.leaf;
    const now = clock();
    if (leaf.checkIssued(this.issuingX509)) {
      const serial = leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
      const rec = await store.getCertificate(serial);
      if (rec && rec.der.equals(leaf.raw)) {
        if (rec.status !== 'valid') throw new DeviceCaError('forbidden', 'certificate is revoked');
        if (!withinValidity(leaf, now)) throw new DeviceCaError('forbidden', 'certificate has expired');
        if (!rec.deviceId) throw new DeviceCaError('forbidden', 'certificate does not belong to a device');
        return { kind: 'device-cert', deviceId: rec.deviceId, cert: rec, x509: leaf };
      }
      if (leaf.verify(this.issuingX509.publicKey)) throw new DeviceCaError('forbidden', 'certificate is not known to this CA');
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
