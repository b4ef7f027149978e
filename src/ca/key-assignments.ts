import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { AuditStore, CaStateStore } from '../store/store';
import { KeyBackend } from '../keys/key-backend';
import { loadCa } from './ca-hierarchy';
import { certificateParts } from './certificate-parts';
import { OCSP_RESPONDER_RECORD } from './service-certificates';
import { fromStoredRef } from '../data-dir/data-dir-ref';

export interface KeyAssignment {
  role: string;
  ca: string;
  /** ref: the key file (resolved under the data directory) or PKCS#11 URI */
  ref: string;
  /** certificate: the operator export of the certificate, or where it lives ('store') */
  certificate: string;
  spkiSha256: string;
}

/**
 * keyAssignments says which key serves which role (for `device-ca keys list`), from the CA state in the
 * store. It opens no key: the backend is only handed to loadCa for its lazy issuing key.
 */
export async function keyAssignments(cfg: Config, keys: KeyBackend, store: CaStateStore & AuditStore): Promise<KeyAssignment[]> {
  const h = await loadCa(cfg, keys, store, { lazyKeys: true });
  const spkiHash = (der: Buffer) => crypto.createHash('sha256').update(certificateParts(der).spki).digest('hex');
  const rows: KeyAssignment[] = [
    { role: 'root', ca: h.state.root.name, ref: h.state.root.keyRef, certificate: h.state.root.certFile, spkiSha256: spkiHash(h.root.der) },
    { role: 'issuing', ca: h.state.issuing.name, ref: h.state.issuing.keyRef, certificate: h.state.issuing.certFile, spkiSha256: spkiHash(h.issuing.der) },
  ];
  const o = await store.getCaState(OCSP_RESPONDER_RECORD);
  if (o) {
    // no responder yet: made at the first `serve`
    const v = o.value as { keyRef: string; der: string };
    rows.push({ role: 'ocsp', ca: h.state.issuing.name, ref: fromStoredRef(cfg.dataDir, v.keyRef), certificate: `store:${OCSP_RESPONDER_RECORD}`, spkiSha256: spkiHash(Buffer.from(v.der, 'base64')) });
  }
  return rows;
}
