import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { AuditStore, CaStateStore } from '../store/store';
import { KeyBackend } from '../keys/key-backend';
import * as path from 'node:path';
import { HIERARCHY_RECORD, StoredCa, caDir, loadCa } from './ca-hierarchy';
import { CaMaterial } from './certificate-authority';
import { certificateParts } from './certificate-parts';
import { OCSP_RESPONDER_RECORD } from './service-certificates';
import { fromStoredRef } from '../data-dir/data-dir-ref';

export interface KeyAssignment {
  /** role: root, root-retired (replaced by `ca rollover-root`, still published), issuing (the one in force), issuing-next (a pending rollover), issuing-retired, ocsp */
  role: string;
  ca: string;
  /** status: 'in force', 'from <ISO time>' (issuing-next), 'retired' (still serving CRLs and OCSP), 'revoked' (listed on the root CRL) */
  status: string;
  /** ref: the key file (resolved under the data directory) or PKCS#11 URI */
  ref: string;
  /** certificate: the operator export of the certificate, or where it lives ('store') */
  certificate: string;
  spkiSha256: string;
}

/**
 * keyAssignments says which key serves which role (for `device-ca keys list`), from the CA state in the
 * store: after `ca rollover` the pending and retired issuing keys too, since an operator must keep them
 * (a retired key still signs its CA's CRLs and OCSP answers until its certificates expire). It opens no
 * key: the backend is only handed to loadCa for its lazy issuing keys.
 */
export async function keyAssignments(cfg: Config, keys: KeyBackend, store: CaStateStore & AuditStore, now = new Date()): Promise<KeyAssignment[]> {
  const h = await loadCa(cfg, keys, store, { lazyKeys: true, now });
  const rec = await store.getCaState(HIERARCHY_RECORD);
  const spkiHash = (der: Buffer) => crypto.createHash('sha256').update(certificateParts(der).spki).digest('hex');
  const revoked = new Set(h.revoked ?? []);
  const issuing = (role: string, ca: CaMaterial, status: string): KeyAssignment => ({
    role,
    ca: ca.name,
    status: revoked.has(ca.name) ? 'revoked' : status,
    ref: ca.key.ref,
    certificate: path.join(caDir(cfg), `${ca.name}.crt`),
    spkiSha256: spkiHash(ca.der),
  });
  const rows: KeyAssignment[] = [
    { role: 'root', ca: h.state.root.name, status: 'in force', ref: h.state.root.keyRef, certificate: h.state.root.certFile, spkiSha256: spkiHash(h.root.der) },
    issuing('issuing', h.issuing, 'in force'),
    ...(h.next ? [issuing('issuing-next', h.next.ca, `from ${h.next.activatesAt.toISOString()}`)] : []),
    // a root `ca rollover-root` replaced: its key still signs its CRL (`ca root-crl --root`) while it is published
    ...h.roots.slice(1).map((r) => {
      const stored = ((rec?.value as StoredCa | undefined)?.previousRoots ?? []).find((p) => p.name === r.name);
      return {
        role: 'root-retired',
        ca: r.name,
        status: 'retired',
        ref: stored ? fromStoredRef(cfg.dataDir, stored.keyRef) : '',
        certificate: path.join(caDir(cfg), `${r.name}.crt`),
        spkiSha256: spkiHash(r.der),
      };
    }),
    ...h.retired.map((r) => issuing('issuing-retired', r, 'retired')),
  ];
  const o = await store.getCaState(OCSP_RESPONDER_RECORD);
  if (o) {
    // no responder yet: made at the first `serve`
    const v = o.value as { keyRef: string; der: string };
    rows.push({
      role: 'ocsp',
      ca: h.state.issuing.name,
      status: 'in force',
      ref: fromStoredRef(cfg.dataDir, v.keyRef),
      certificate: `store:${OCSP_RESPONDER_RECORD}`,
      spkiSha256: spkiHash(Buffer.from(v.der, 'base64')),
    });
  }
  return rows;
}
