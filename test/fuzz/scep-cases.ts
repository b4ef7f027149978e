import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { buildSignedData } from '../../src/cms/signed-data';
import { certsOnly } from '../../src/cms/certs-only';
import { octetString, printableString } from '../../src/der/der-writer';
import { softwareSigningKey } from '../../src/keys/software-key-backend';
import { MESSAGE_TYPE, SCEP_OID } from '../../src/protocols/scep/scep-message';
import { openssl } from '../unit/cms/cms-fixture';
import { Endpoint, RawRequest, sendRaw } from '../helpers/raw-http';
import { TmpDir } from '../helpers/tmp';
import { mutateBytes, nestedSequences } from './byte-mutations';
import { CaseGenerator, Generated } from './fuzz-case';
import { reshape } from './request-shapes';
import { HOSTILE_SEGMENTS, PROTO_NAMES, mutateBase64 } from './text-mutations';

/**
 * scep-cases: SCEP (RFC 8894) PKIOperation messages made the way a client makes them (a PKCSReq for a
 * registered device: CSR with challengePassword, enveloped by openssl to the RA certificate from
 * GetCACert, signed with the device's self-signed certificate), then damaged: as DER (POST), as base64 in
 * message= (GET), truncated, of the wrong content type, huge; and hostile paths and operations. Every
 * answer must be HTTP 400 (nothing to answer) or a signed CertRep (200), never a 5xx or a hang.
 */

/** scepMessages: valid PKCSReq messages for the given devices (id, secret), and GetCert/GetCRL/CertPoll ones. */
export async function scepMessages(ep: Endpoint, tmp: TmpDir, devices: { id: string; secret: string }[]): Promise<Buffer[]> {
  const r = await sendRaw(ep, { listener: 'http', method: 'GET', path: '/scep?operation=GetCACert', headers: [] });
  if (r.kind !== 'reply' || r.status !== 200) throw new Error('SCEP GetCACert failed: is scep.enabled set?');
  const raPem = tmp.write(
    'fuzz/scep-ra.pem',
    openssl(['pkcs7', '-inform', 'DER', '-print_certs'], r.body)
      .toString()
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0] + '\n',
  );
  const out: Buffer[] = [];
  for (const [i, d] of devices.entries()) {
    const keyFile = tmp.file(`fuzz/scep-${i}.key`);
    openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile]);
    const conf = tmp.write(`fuzz/scep-${i}.cnf`, `[req]\ndistinguished_name=dn\nattributes=attrs\nprompt=no\n[dn]\nCN=${d.id}\n[attrs]\nchallengePassword=${d.secret}\n`);
    const csr = openssl(['req', '-new', '-key', keyFile, '-config', conf, '-outform', 'DER']);
    const cert = Buffer.from(new crypto.X509Certificate(openssl(['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${d.id}`, '-days', '1'])).raw);
    const key = softwareSigningKey(crypto.createPrivateKey(fs.readFileSync(keyFile)), 'rsa-2048', 'memory');
    const sign = (type: string, content: Buffer) =>
      buildSignedData({
        content: openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', i % 2 ? '-aes128' : '-aes256', raPem], content),
        signer: { certificate: cert, key },
        attributes: [
          { type: SCEP_OID.messageType, values: [printableString(type)] },
          { type: SCEP_OID.transactionID, values: [printableString(`fuzz-${i}-${type}`)] },
          { type: SCEP_OID.senderNonce, values: [octetString(crypto.randomBytes(16))] },
        ],
        certificates: [cert],
      });
    out.push(await sign(MESSAGE_TYPE.PKCSReq, csr));
    if (i === 0)
      out.push(
        await sign(MESSAGE_TYPE.GetCert, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])),
        await sign(MESSAGE_TYPE.GetCRL, csr),
        // CertPoll: a malformed IssuerAndSubject, and a well-formed one (two empty Names) under a transactionID never PENDING
        await sign(MESSAGE_TYPE.CertPoll, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])),
        await sign(MESSAGE_TYPE.CertPoll, Buffer.from([0x30, 0x04, 0x30, 0x00, 0x30, 0x00])),
      );
  }
  return out;
}

const post = (how: string, body: Buffer, path = '/scep?operation=PKIOperation'): Generated => ({ how, request: { listener: 'http', method: 'POST', path, headers: [], body } });
const get = (how: string, path: string): Generated => ({ how, request: { listener: 'http', method: 'GET', path, headers: [] } });

/** SCEP_CORPUS: requests sent on every run. */
export function scepCorpus(messages: Buffer[]): Generated[] {
  const valid = messages[0];
  const out: Generated[] = [
    post('valid PKCSReq', valid),
    get('valid PKCSReq, GET, %-encoded', `/scep?operation=PKIOperation&message=${encodeURIComponent(valid.toString('base64'))}`),
    get('valid PKCSReq, GET, base64 not %-encoded', `/scep?operation=PKIOperation&message=${valid.toString('base64')}`),
    post('valid PKCSReq as base64 body', Buffer.from(valid.toString('base64'))),
    post('empty body', Buffer.alloc(0)),
    post('garbage', Buffer.from('this is no pkiMessage')),
    post('truncated CMS (half)', valid.subarray(0, valid.length >> 1)),
    post('truncated CMS (last byte)', valid.subarray(0, valid.length - 1)),
    post('10 000 nested SEQUENCEs', nestedSequences(10_000)),
    post('over the body limit', Buffer.alloc(2_000_000, 0x30)),
    post('a certs-only SignedData (no signer)', certsOnly([])),
    post('a ContentInfo of another type (authEnvelopedData)', Buffer.from('3014060b2a864886f70d0109100117a0053003020100', 'hex')),
    get('message= missing', '/scep?operation=PKIOperation'),
    get('message= not base64', '/scep?operation=PKIOperation&message=%%%%'),
    // over Node's 16 KB header limit (431), yet small enough to be written whole before the server closes: a
    // multi-megabyte request line is cut by a TCP reset on any server, which says nothing about this one
    get('message= 60 KB', `/scep?operation=PKIOperation&message=${'A'.repeat(60_000)}`),
    get('operation twice', '/scep?operation=GetCACaps&operation=PKIOperation'),
    get('no operation', '/scep'),
    get('NDES path', '/certsrv/mscep/mscep.dll?operation=GetCACaps'),
    get('bad %-encoding', '/scep?operation=%E0%A4%A'),
  ];
  for (const m of messages.slice(1)) out.push(post(`valid message ${out.length}`, m));
  for (const name of [...PROTO_NAMES, ...HOSTILE_SEGMENTS.slice(0, 4)])
    out.push(get(`path "${name}"`, `/scep/${name}?operation=GetCACaps`), post(`path "${name}" PKIOperation`, valid, `/scep/${name}?operation=PKIOperation`));
  return out;
}

/** scepCases: random SCEP cases, the valid messages damaged as bytes (POST) or as base64 (GET). */
export function scepCases(messages: Buffer[]): CaseGenerator {
  return (rng) => {
    const valid = rng.pick(messages);
    const hows: string[] = [];
    let request: RawRequest;
    if (rng.chance(0.6)) {
      const mu = mutateBytes(rng, valid);
      hows.push('POST', mu.how);
      request = { listener: 'http', method: 'POST', path: rng.chance(0.8) ? '/scep?operation=PKIOperation' : '/certsrv/mscep/mscep.dll?operation=PKIOperation', headers: [], body: mu.bytes };
    } else {
      const t = rng.chance(0.5) ? { text: mutateBytes(rng, valid).bytes.toString('base64'), how: 'bytes damaged' } : mutateBase64(rng, valid);
      hows.push('GET', t.how);
      request = { listener: 'http', method: 'GET', path: `/scep?operation=PKIOperation&message=${rng.chance(0.7) ? encodeURIComponent(t.text) : t.text}`, headers: [] };
    }
    const shaped = reshape(rng, request, 0.2);
    if (shaped.how) hows.push(shaped.how);
    return { how: hows.join('; '), request: shaped.request };
  };
}
