import { X509Certificate } from 'node:crypto';
import { children, decodeOid, decodeString, readOne, readTlv, Tlv } from '../../der/der-reader';
import { AttestationVerdict, fail } from './attestation-verdict';

/** TCG EK Credential Profile §3.2.9: the TPM's identity as attributes of a directoryName in the EK certificate's SAN. */
const TPM_MANUFACTURER = '2.23.133.2.1';
const TPM_MODEL = '2.23.133.2.2';
const TPM_VERSION = '2.23.133.2.3';
const SUBJECT_ALT_NAME = '2.5.29.17';
const MAX_CHAIN = 5;

export interface EkIdentity {
  /** manufacturer: the TCG vendor id as written, e.g. "id:49465800" (Infineon); undefined if absent */
  manufacturer?: string;
  model?: string;
  version?: string;
}

function extensions(cert: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const tbs = children(readOne(cert, 0x30))[0];
  if (!tbs || tbs.tag !== 0x30) return out;
  const ext = children(tbs).find((t) => t.tag === 0xa3); // [3] EXPLICIT Extensions (RFC 5280 §4.1)
  if (!ext) return out;
  for (const e of children(readOne(ext.value, 0x30))) {
    const parts = children(e);
    const value = parts[parts.length - 1];
    if (parts.length >= 2 && value.tag === 0x04) out.set(decodeOid(parts[0]), value.value);
  }
  return out;
}

/** ekIdentity reads manufacturer, model and firmware version from the EK certificate's SAN directoryName. */
export function ekIdentity(certDer: Buffer): EkIdentity {
  const san = extensions(certDer).get(SUBJECT_ALT_NAME);
  const id: EkIdentity = {};
  if (!san) return id;
  for (const gn of children(readOne(san, 0x30))) {
    if (gn.tag !== 0xa4) continue; // directoryName [4] EXPLICIT Name
    const name: Tlv = readTlv(gn.value).tlv;
    for (const rdn of children(name)) {
      for (const atv of children(rdn)) {
        const [oid, value] = children(atv);
        if (!oid || !value) continue;
        const type = decodeOid(oid);
        if (type === TPM_MANUFACTURER) id.manufacturer = decodeString(value);
        else if (type === TPM_MODEL) id.model = decodeString(value);
        else if (type === TPM_VERSION) id.version = decodeString(value);
      }
    }
  }
  return id;
}

function validAt(c: X509Certificate, now: Date): boolean {
  return new Date(c.validFrom) <= now && now <= new Date(c.validTo);
}

function issuedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  return child.checkIssued(issuer) && child.verify(issuer.publicKey);
}

/**
 * verifyEkCertificate checks that an EK certificate chains to one of the trusted TPM manufacturer roots,
 * through intermediates the device sent or the trust store holds (every certificate in the trust store is
 * an anchor: manufacturers publish intermediates as roots of their EK families). Every certificate on the
 * path must be valid at `now`; each issuer must be a CA. EK certificates carry no revocation pointer that
 * devices reach reliably, so none is checked (the operator removes a root to distrust a family).
 */
export function verifyEkCertificate(ekCertDer: Buffer, chainDer: Buffer[], anchors: readonly X509Certificate[], now: Date): AttestationVerdict<{ cert: X509Certificate; identity: EkIdentity }> {
  let leaf: X509Certificate;
  let chain: X509Certificate[];
  let identity: EkIdentity;
  try {
    leaf = new X509Certificate(ekCertDer);
    chain = chainDer.slice(0, MAX_CHAIN).map((d) => new X509Certificate(d));
    identity = ekIdentity(ekCertDer);
  } catch (e) {
    return fail('ek-certificate', `unreadable EK certificate or chain: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!validAt(leaf, now)) return fail('ek-certificate', 'EK certificate not valid now');
  let cur = leaf;
  for (let depth = 0; depth <= MAX_CHAIN; depth++) {
    const anchor = anchors.find((a) => issuedBy(cur, a));
    if (anchor) {
      if (!validAt(anchor, now)) return fail('ek-certificate', `trusted root ${anchor.subject} not valid now`);
      return { ok: true, value: { cert: leaf, identity } };
    }
    const next = chain.find((c) => c !== cur && c.ca && validAt(c, now) && issuedBy(cur, c));
    if (!next) return fail('ek-certificate', `no trusted issuer for ${cur.subject || '(empty subject)'} (issuer ${cur.issuer})`);
    cur = next;
  }
  return fail('ek-certificate', 'EK certificate chain too long');
}
