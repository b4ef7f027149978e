import * as crypto from 'node:crypto';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { checkChannelBinding } from '../../../../src/ra/authenticators/channel-binding-check';

/** checkChannelBinding: RFC 7030 §3.5 proof of possession, tls-unique (TLS 1.2) or tls-exporter (TLS 1.3). */

const unique = crypto.randomBytes(12); // a TLS 1.2 Finished message is 12 bytes
const exporter = crypto.randomBytes(32);

describe('checkChannelBinding', () => {
  it.each([
    ['base64(tls-unique)', unique.toString('base64'), { tlsUnique: unique }],
    ['base64(tls-unique) with surrounding spaces', ` ${unique.toString('base64')}\n`, { tlsUnique: unique }],
    ['base64(tls-exporter) on TLS 1.3', exporter.toString('base64'), { tlsExporter: exporter }],
  ])('accepts %s', (_name, challengePassword, binding) => {
    expect(() => checkChannelBinding(challengePassword, binding)).not.toThrow();
  });

  it.each([
    ['no challengePassword', null, { tlsUnique: unique }, /challengePassword must carry/],
    ["another connection's binding", crypto.randomBytes(12).toString('base64'), { tlsUnique: unique }, /does not match/],
    ['a prefix of the binding', unique.subarray(0, 6).toString('base64'), { tlsUnique: unique }, /does not match/],
    ['the binding in hex, not base64', unique.toString('hex'), { tlsUnique: unique }, /does not match/],
    ['no channel binding (not TLS)', unique.toString('base64'), undefined, /needs a TLS channel binding/],
    ['an empty binding object', unique.toString('base64'), {}, /needs a TLS channel binding/],
  ])('refuses %s: forbidden', (_name, challengePassword, binding, message) => {
    let err: unknown;
    try {
      checkChannelBinding(challengePassword, binding);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceCaError);
    expect(err).toMatchObject({ code: 'forbidden', message: expect.stringMatching(message) });
  });
});
