import * as crypto from 'node:crypto';
import { signCaCert } from '../../../src/ca/ca-hierarchy';
import { encodeName } from '../../../src/ca/name';
import { signRootLinks } from '../../../src/ca/root-links';
import { firmwareChainOf } from '../../../src/cms/firmware-chain';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SigningKey } from '../../../src/keys/key-backend';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';

/**
 * firmwareChainOf: which certificate of a device's firmware chain is the signer CA, before and after a
 * root rollover (signer CA, OldWithNew, old root), with the same CA code the service uses.
 */
const now = new Date();
const newKey = (ref: string): SigningKey => softwareSigningKey(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ecdsa-p256', ref);
const name = (cn: string): Buffer => encodeName([{ type: 'CN', value: cn }]);
const selfSigned = (key: SigningKey, cn: string): Promise<Buffer> => signCaCert({ issuerKey: key, issuerName: name(cn), subjectName: name(cn), spki: key.spki, validitySeconds: 86_400, now });
const issued = (issuerKey: SigningKey, issuer: string, key: SigningKey, cn: string): Promise<Buffer> =>
  signCaCert({ issuerKey, issuerName: name(issuer), subjectName: name(cn), spki: key.spki, validitySeconds: 3600, pathLen: 0, now });

let oldRoot: Buffer, newRoot: Buffer, oldWithNew: Buffer, newWithOld: Buffer, signerUnderNew: Buffer, signerUnderOld: Buffer, otherRoot: Buffer;

beforeAll(async () => {
  const [k1, k2, ks, kt, ko] = ['r1', 'r2', 's', 't', 'o'].map(newKey);
  oldRoot = await selfSigned(k1, 'Root');
  newRoot = await selfSigned(k2, 'Root 2');
  ({ oldWithNew, newWithOld } = await signRootLinks({
    old: { der: oldRoot, key: k1, urls: { crl: 'http://x/r1.crl', caIssuers: 'http://x/r1.crt' } },
    new: { der: newRoot, key: k2, urls: { crl: 'http://x/r2.crl', caIssuers: 'http://x/r2.crt' } },
    now,
  }));
  signerUnderNew = await issued(k2, 'Root 2', ks, 'Signer CA');
  signerUnderOld = await issued(k1, 'Root', kt, 'Signer CA old');
  otherRoot = await selfSigned(ko, 'Root 2'); // same name as the new root, another key
});

const pick = (chain: Buffer[]): [string, string] => {
  const { root, signerCa } = firmwareChainOf(chain);
  return [root.subject, signerCa.subject];
};

describe('firmwareChainOf', () => {
  it('signer CA and its root, in either order', () => {
    expect(pick([signerUnderNew, newRoot])).toEqual(['CN=Root 2', 'CN=Signer CA']);
    expect(pick([newRoot, signerUnderNew])).toEqual(['CN=Root 2', 'CN=Signer CA']);
  });

  it('after a rollover: signer CA, OldWithNew, old root; signer CA, NewWithOld, new root', () => {
    expect(pick([signerUnderNew, oldWithNew, oldRoot])).toEqual(['CN=Root', 'CN=Signer CA']);
    expect(pick([oldRoot, oldWithNew, signerUnderNew])).toEqual(['CN=Root', 'CN=Signer CA']);
    expect(pick([signerUnderOld, newWithOld, newRoot])).toEqual(['CN=Root 2', 'CN=Signer CA old']);
  });

  it('refused: a root alone, a signer CA of another root, a link of the other direction, a root of the same name with another key', () => {
    for (const chain of [[oldRoot], [signerUnderNew, oldRoot], [signerUnderNew, newWithOld, oldRoot], [signerUnderNew, otherRoot]]) {
      expect(() => firmwareChainOf(chain)).toThrow(new DeviceCaError('bad-request', 'the chain must hold the firmware signer CA and the root that issued it (or a link certificate to it)'));
    }
  });
});
