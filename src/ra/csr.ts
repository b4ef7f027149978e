import * as crypto from 'node:crypto';
import { Tlv, children, decodeOid, decodeString, expectTag, readOne } from '../der/der-reader';
import { OID } from '../der/oids';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm } from '../keys/key-backend';
import { SanEntry } from '../ca/certificate-encoder';

/** MAX_CSR_BYTES bounds a PKCS#10 request; RSA-4096 with extensions stays far below. */
export const MAX_CSR_BYTES = 16 * 1024;

/** ParsedCsr is what the RA needs from a PKCS#10 request (RFC 2986), after the signature checked out. */
export interface ParsedCsr {
  der: Buffer;
  subject: { type: string; value: string }[];
  spki: Buffer;
  keyAlgorithm: KeyAlgorithm | null; // null: a type device-ca does not issue for
  keyType: 'ec' | 'rsa' | 'other';
  challengePassword: string | null;
  sans: SanEntry[];
  /** otherSans counts SAN types device-ca does not copy (email, otherName, ...) */
  otherSans: number;
  /** evidence: the statements of the id-aa-evidence attribute (draft-ietf-lamps-csr-attestation), not yet checked */
  evidence: EvidenceStatement[];
}

/**
 * EvidenceStatement is one statement of the CSR evidence attribute: its type OID, the statement's DER
 * as sent (its meaning depends on the type; ra/ decodes the ones it checks) and the optional hint.
 */
export interface EvidenceStatement {
  type: string;
  stmt: Buffer;
  hint: string | null;
}

/** MAX_EVIDENCE_STATEMENTS bounds the statements read from one CSR (a TPM sends one certify, maybe one quote). */
const MAX_EVIDENCE_STATEMENTS = 8;

/**
 * SIG_ALGS: the CSR signature algorithms device-ca reads: the hash, and the key type each is for.
 * crypto.verify takes only the hash, so without the key type an RSA key's request labelled
 * ecdsa-with-SHA256 would verify; a request must name the algorithm it was signed with (RFC 2986 §4.2,
 * RFC 5758 §3.2, RFC 4055 §5).
 */
const SIG_ALGS: Record<string, { hash: string; keyType: 'ec' | 'rsa' }> = {
  [OID.ecdsaWithSHA256]: { hash: 'sha256', keyType: 'ec' },
  [OID.ecdsaWithSHA384]: { hash: 'sha384', keyType: 'ec' },
  [OID.ecdsaWithSHA512]: { hash: 'sha512', keyType: 'ec' },
  [OID.sha256WithRSAEncryption]: { hash: 'sha256', keyType: 'rsa' },
  [OID.sha384WithRSAEncryption]: { hash: 'sha384', keyType: 'rsa' },
  [OID.sha512WithRSAEncryption]: { hash: 'sha512', keyType: 'rsa' },
};
const NAME_TYPES: Record<string, string> = { [OID.commonName]: 'CN', [OID.organizationName]: 'O', [OID.serialNumber]: 'serialNumber' };

const bad = (msg: string): never => {
  throw new DeviceCaError('bad-csr', msg);
};

/**
 * parseCsr decodes a DER CertificationRequest and verifies its self-signature. Malformed DER is
 * 'bad-request'; a well-formed request that is unusable (bad signature, unknown algorithm) is 'bad-csr'.
 * The RA verifies on worker threads instead (ra/csr-verify-pool.ts), with the same verdicts.
 */
export function parseCsr(der: Buffer): ParsedCsr {
  const csr = readCsr(der);
  const v = csr.verify;
  let pub: crypto.KeyObject;
  try {
    pub = crypto.createPublicKey(v.keyInput);
  } catch {
    return rejectSignature('key');
  }
  const ec = pub.asymmetricKeyType === 'ec';
  let ok = false;
  try {
    ok = crypto.verify(v.hash, v.data, ec ? { key: pub, dsaEncoding: 'der' } : pub, v.sig);
  } catch {
    ok = false;
  }
  if (!ok) rejectSignature('signature');
  return csr.complete(pub.asymmetricKeyType ?? 'other', v.algorithm ?? keyAlgorithmOf(pub));
}

/**
 * UnverifiedCsr is a CertificationRequest decoded but not yet verified: what the signature check needs
 * (plain data, so it can be posted to a worker thread) and complete(), which makes the ParsedCsr once the
 * check passed.
 */
export interface UnverifiedCsr {
  verify: {
    /** createPublicKey's input: a JWK for P-256/P-384 points, else the SPKI DER */
    keyInput: crypto.PublicKeyInput | crypto.JsonWebKeyInput;
    /** the key algorithm when the SPKI bytes name it (EC fast path), else null: found from the imported key */
    algorithm: KeyAlgorithm | null;
    hash: string;
    data: Buffer;
    sig: Buffer;
  };
  complete(keyType: string, algorithm: KeyAlgorithm | null): ParsedCsr;
}

/** readCsr is parseCsr without the signature check: every DER and field check, in the same order. */
export function readCsr(der: Buffer): UnverifiedCsr {
  if (der.length > MAX_CSR_BYTES) throw new DeviceCaError('too-large', `CSR larger than ${MAX_CSR_BYTES} bytes`);
  const top = children(readOne(der, 0x30), 3);
  if (top.length !== 3) bad('CSR must be SEQUENCE { info, algorithm, signature }');
  const [info, sigAlg, sigBits] = top;
  expectTag(info, 0x30, 'certificationRequestInfo');
  expectTag(sigBits, 0x03, 'signature');
  const f = children(info, 4);
  if (f.length < 3) bad('certificationRequestInfo is incomplete');
  expectTag(f[0], 0x02, 'version');
  if (f[0].value.length !== 1 || f[0].value[0] !== 0) bad('CSR version must be 0 (v1)');
  const subject = parseName(expectTag(f[1], 0x30, 'subject'));
  const spki = expectTag(f[2], 0x30, 'subjectPKInfo').full;
  const attrs = f[3] ? parseAttributes(f[3]) : { challengePassword: null, sans: [], otherSans: 0, evidence: [] };

  const algParts = children(expectTag(sigAlg, 0x30, 'signatureAlgorithm'), 2);
  if (algParts.length === 0) bad('signatureAlgorithm is empty');
  const sigOid = decodeOid(algParts[0]);
  const named = Object.prototype.hasOwnProperty.call(SIG_ALGS, sigOid) ? SIG_ALGS[sigOid] : undefined;
  if (!named) bad(`unsupported CSR signature algorithm ${sigOid}`);
  const { hash, keyType: sigKeyType } = named as { hash: string; keyType: 'ec' | 'rsa' };
  if (sigBits.value.length < 2 || sigBits.value[0] !== 0) bad('signature BIT STRING malformed');
  const { keyInput, algorithm } = publicKeyInput(spki);
  return {
    verify: { keyInput, algorithm, hash, data: info.full, sig: sigBits.value.subarray(1) },
    complete: (keyType, keyAlgorithm) => {
      if (keyType !== sigKeyType) bad(`CSR signature algorithm ${sigOid} is not for its ${keyType} key`);
      return { der, subject, spki, keyAlgorithm, keyType: keyType === 'ec' ? 'ec' : keyType === 'rsa' ? 'rsa' : 'other', ...attrs };
    },
  };
}

/** rejectSignature throws parseCsr's error for a key that cannot be imported or a signature that does not verify. */
export function rejectSignature(what: 'key' | 'signature'): never {
  return bad(what === 'key' ? 'subject public key cannot be parsed' : 'CSR signature does not verify');
}

/** EC_SPKI: the fixed DER prefix of a named-curve SPKI with an uncompressed point (RFC 5480 §2), by curve. */
const EC_SPKI = [
  { prefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), crv: 'P-256', algorithm: 'ecdsa-p256', size: 32 },
  { prefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'), crv: 'P-384', algorithm: 'ecdsa-p384', size: 48 },
] as const;

/**
 * publicKeyInput says how to import a CSR's SPKI. OpenSSL 3.0's DER decoder (createPublicKey with format
 * 'der') costs about 110 µs per key; the same P-256/P-384 point as a JWK about 70 µs, with the same
 * on-curve check. Anything else takes the DER path. For the EC fast path the key algorithm comes from the
 * SPKI bytes, not from asymmetricKeyDetails (another provider round trip).
 */
function publicKeyInput(spki: Buffer): { keyInput: crypto.PublicKeyInput | crypto.JsonWebKeyInput; algorithm: KeyAlgorithm | null } {
  for (const c of EC_SPKI) {
    const p = c.prefix.length;
    if (spki.length === p + 1 + 2 * c.size && spki[p] === 0x04 && spki.subarray(0, p).equals(c.prefix)) {
      const x = spki.subarray(p + 1, p + 1 + c.size).toString('base64url');
      const y = spki.subarray(p + 1 + c.size).toString('base64url');
      return { keyInput: { key: { kty: 'EC', crv: c.crv, x, y }, format: 'jwk' }, algorithm: c.algorithm };
    }
  }
  return { keyInput: { key: spki, format: 'der', type: 'spki' }, algorithm: null };
}

/** importPublicKey turns a CSR's SPKI into a KeyObject (publicKeyInput's fast path for EC points). */
export function importPublicKey(spki: Buffer): { key: crypto.KeyObject; algorithm: KeyAlgorithm | null } {
  const { keyInput, algorithm } = publicKeyInput(spki);
  const key = crypto.createPublicKey(keyInput);
  return { key, algorithm: algorithm ?? keyAlgorithmOf(key) };
}

export function keyAlgorithmOf(pub: crypto.KeyObject): KeyAlgorithm | null {
  const d = pub.asymmetricKeyDetails ?? {};
  return keyAlgorithmFromDetails(pub.asymmetricKeyType, d.namedCurve, d.modulusLength);
}

/** keyAlgorithmFromDetails: the algorithm device-ca names a key by, from its type and details (null: one it does not issue for). */
export function keyAlgorithmFromDetails(type: string | undefined, namedCurve: string | undefined, modulusLength: number | undefined): KeyAlgorithm | null {
  if (type === 'ec') return namedCurve === 'prime256v1' ? 'ecdsa-p256' : namedCurve === 'secp384r1' ? 'ecdsa-p384' : null;
  if (type === 'rsa') return modulusLength === 2048 ? 'rsa-2048' : modulusLength === 3072 ? 'rsa-3072' : null;
  return null;
}

function parseName(name: Tlv): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  for (const rdn of children(name, 32)) {
    expectTag(rdn, 0x31, 'RDN');
    for (const atv of children(rdn, 8)) {
      const [t, v] = children(expectTag(atv, 0x30, 'AttributeTypeAndValue'), 2);
      if (!v) bad('attribute without value');
      const oid = decodeOid(t);
      out.push({ type: NAME_TYPES[oid] ?? oid, value: decodeString(v) });
    }
  }
  return out;
}

function parseAttributes(a: Tlv): Pick<ParsedCsr, 'challengePassword' | 'sans' | 'otherSans' | 'evidence'> {
  expectTag(a, 0xa0, 'attributes');
  const evidence: EvidenceStatement[] = [];
  let challengePassword: string | null = null;
  let sans: SanEntry[] = [];
  let otherSans = 0;
  for (const attr of children(a, 32)) {
    const [t, values] = children(expectTag(attr, 0x30, 'Attribute'), 2);
    if (!values) bad('attribute without values');
    const oid = decodeOid(t);
    const vs = children(expectTag(values, 0x31, 'attribute values'), 8);
    if (vs.length === 0) bad('attribute without values');
    if (oid === OID.challengePassword) {
      // PKCS#9 allows PrintableString and UTF8String; clients send either
      if (vs.length !== 1) bad('challengePassword must have one value');
      challengePassword = decodeString(vs[0]);
    } else if (oid === OID.evidence) {
      for (const v of vs) evidence.push(...evidenceStatements(v));
      if (evidence.length > MAX_EVIDENCE_STATEMENTS) bad(`more than ${MAX_EVIDENCE_STATEMENTS} evidence statements`);
    } else if (oid === OID.extensionRequest) {
      for (const ext of children(expectTag(vs[0], 0x30, 'extensions'), 64)) {
        const parts = children(expectTag(ext, 0x30, 'Extension'), 3);
        if (parts.length < 2) bad('Extension is incomplete');
        if (decodeOid(parts[0]) !== OID.subjectAltName) continue;
        const octets = expectTag(parts[parts.length - 1], 0x04, 'extnValue');
        const r = parseSans(readOne(octets.value, 0x30));
        sans = r.sans;
        otherSans = r.other;
      }
    }
  }
  return { challengePassword, sans, otherSans, evidence };
}

/**
 * evidenceStatements reads one value of the evidence attribute in any of the shapes the revisions of
 * draft-ietf-lamps-csr-attestation have used, told apart by where the first statement's type OID sits:
 * - EvidenceStatement ::= SEQUENCE { type OID, stmt ANY, hint UTF8String OPTIONAL } (older single form);
 * - EvidenceStatements ::= SEQUENCE OF EvidenceStatement (newest revisions, certificates elsewhere);
 * - EvidenceBundle ::= SEQUENCE { evidences SEQUENCE OF EvidenceStatement, certs SEQUENCE OF ... OPTIONAL };
 * - EvidenceBundles ::= SEQUENCE OF EvidenceBundle (revisions 03-1x).
 * The certs field is skipped: a TPM's AK is trusted through its registration, not through certificates.
 */
function evidenceStatements(v: Tlv): EvidenceStatement[] {
  const max = MAX_EVIDENCE_STATEMENTS + 1;
  const first = (t: Tlv): Tlv | undefined => (t.tag === 0x30 ? children(t, max)[0] : undefined);
  const l1 = first(v);
  const l2 = l1 && first(l1);
  const l3 = l2 && first(l2);
  if (l1?.tag === 0x06) return [evidenceStatement(v)];
  if (l2?.tag === 0x06) return children(v, max).map(evidenceStatement);
  if (l3?.tag === 0x06) return evidenceBundle(v);
  if (l3 && first(l3)?.tag === 0x06) return children(v, max).flatMap(evidenceBundle);
  return bad('evidence attribute is not an EvidenceStatement, EvidenceBundle or a sequence of them');
}

function evidenceBundle(b: Tlv): EvidenceStatement[] {
  const [evidences] = children(expectTag(b, 0x30, 'EvidenceBundle'), 2);
  return children(expectTag(evidences, 0x30, 'evidences'), MAX_EVIDENCE_STATEMENTS + 1).map(evidenceStatement);
}

function evidenceStatement(s: Tlv): EvidenceStatement {
  const parts = children(expectTag(s, 0x30, 'EvidenceStatement'), 3);
  if (parts.length < 2) bad('EvidenceStatement needs a type and a statement');
  const hint = parts[2] ? decodeString(expectTag(parts[2], 0x0c, 'hint')) : null;
  return { type: decodeOid(parts[0]), stmt: parts[1].full, hint };
}

function parseSans(gns: Tlv): { sans: SanEntry[]; other: number } {
  const sans: SanEntry[] = [];
  let other = 0;
  for (const gn of children(gns, 64)) {
    if (gn.tag === 0x82) sans.push({ type: 'dns', value: gn.value.toString('latin1') });
    else if (gn.tag === 0x86) sans.push({ type: 'uri', value: gn.value.toString('latin1') });
    else if (gn.tag === 0x87) {
      if (gn.value.length !== 4 && gn.value.length !== 16) bad('iPAddress SAN must be 4 or 16 octets');
      sans.push({ type: 'ip', value: ipString(gn.value) });
    } else other++;
  }
  return { sans, other };
}

function ipString(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}
