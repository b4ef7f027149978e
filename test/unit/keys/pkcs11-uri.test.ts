import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { Pkcs11Uri, formatPkcs11Uri, parsePkcs11Uri } from '../../../src/keys/pkcs11/pkcs11-uri';

/** RFC 7512 PKCS#11 URIs: what device-ca accepts, what it refuses and why, and its canonical output. */

const hex = (h: string): Buffer => Buffer.from(h, 'hex');

describe('parsePkcs11Uri accepts', () => {
  test.each<[string, string, Pkcs11Uri]>([
    ['the ref generate writes', 'pkcs11:token=ca;object=root-2024;id=%01%a2%ff;type=private', { token: 'ca', object: 'root-2024', id: hex('01a2ff'), type: 'private' }],
    ['an empty path', 'pkcs11:', {}],
    ['the scheme in any case (RFC 3986 §3.1)', 'PKCS11:object=k', { object: 'k' }],
    ['attributes in any order', 'pkcs11:type=private;id=%00;token=ca', { type: 'private', id: hex('00'), token: 'ca' }],
    ['RFC 7512 §3 example: spaces and a percent-encoded label', 'pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;object=my%20key', { token: 'The Software PKCS#11 Softtoken', object: 'my key' }],
    ['an id written with literal characters', 'pkcs11:id=ab', { id: Buffer.from('ab') }],
    ['upper- and lower-case hex escapes', 'pkcs11:id=%aB%Cd', { id: hex('abcd') }],
    ['UTF-8 labels (RFC 7512 §2.3: attribute values are UTF-8)', 'pkcs11:object=%C3%A9t%C3%A9', { object: 'été' }],
    ['reserved characters §2.3 allows unencoded in the path', "pkcs11:object=a:b[c]@!$'()*+,=&", { object: "a:b[c]@!$'()*+,=&" }],
    ['serial', 'pkcs11:serial=18b06826ed552c2f;object=k', { serial: '18b06826ed552c2f', object: 'k' }],
    ['an empty value', 'pkcs11:token=;object=k', { token: '', object: 'k' }],
    ['every type value', 'pkcs11:type=secret-key', { type: 'secret-key' }],
    [
      'module-path and module-name in the query',
      'pkcs11:object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&module-name=softhsm2',
      { object: 'k', modulePath: '/usr/lib/softhsm/libsofthsm2.so', moduleName: 'softhsm2' },
    ],
    ['an empty query', 'pkcs11:object=k?', { object: 'k' }],
  ])('%s', (_what, uri, expected) => {
    expect(parsePkcs11Uri(uri)).toEqual(expected);
  });
});

describe('parsePkcs11Uri refuses, with a config error that names the problem', () => {
  test.each<[string, string, RegExp]>([
    ['another scheme', 'pkcs12:object=k', /must start with "pkcs11:"/],
    ['a PIN value in the query', 'pkcs11:object=k?pin-value=123456', /"pin-value" is not accepted/],
    ['a PIN source in the query', 'pkcs11:object=k?pin-source=file:/etc/pin', /"pin-source" is not accepted/],
    ['a duplicate path attribute (§2.3)', 'pkcs11:object=a;object=b', /"object" appears more than once/],
    ['a duplicate query attribute', 'pkcs11:?module-name=a&module-name=b', /"module-name" appears more than once/],
    ['a malformed percent-encoding', 'pkcs11:id=%0g', /malformed percent-encoding/],
    ['a truncated percent-encoding', 'pkcs11:id=%0', /malformed percent-encoding/],
    ['a raw space', 'pkcs11:token=my token', /contains "space"/],
    ['a raw slash in the path', 'pkcs11:object=a/b', /contains "\/"/],
    ['non-ASCII characters not percent-encoded', 'pkcs11:object=été', /must be percent-encoded/],
    ['invalid UTF-8 in a text attribute', 'pkcs11:object=%ff', /not valid UTF-8/],
    ['an unknown type', 'pkcs11:type=key', /type must be one of/],
    ['a standard attribute device-ca does not match on', 'pkcs11:model=SoftHSM%20v2;object=k', /"model" is not supported/],
    ['slot-id', 'pkcs11:slot-id=0;object=k', /"slot-id" is not supported/],
    ['a vendor attribute', 'pkcs11:x-vendor=1;object=k', /vendor attribute "x-vendor"/],
    ['an unknown attribute', 'pkcs11:colour=blue', /unknown path attribute "colour"/],
    ['an unknown query attribute', 'pkcs11:object=k?foo=bar', /unknown query attribute "foo"/],
    ['a component without "="', 'pkcs11:object', /is not name=value/],
    ['a fragment', 'pkcs11:object=k#frag', /fragment/],
    ['an over-long URI', `pkcs11:object=${'a'.repeat(5000)}`, /longer than 4096/],
  ])('%s', (_what, uri, message) => {
    let err: unknown;
    try {
      parsePkcs11Uri(uri);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceCaError);
    expect(err).toMatchObject({ code: 'config' });
    expect((err as Error).message).toMatch(message);
  });

  test('the refusal of a PIN never echoes the PIN', () => {
    expect(() => parsePkcs11Uri('pkcs11:object=k?pin-value=s3cr3t')).toThrow(expect.objectContaining({ message: expect.not.stringContaining('s3cr3t') }));
  });
});

describe('formatPkcs11Uri', () => {
  test.each<[string, Pkcs11Uri, string]>([
    ['the ref generate writes', { token: 'ca', object: 'root', id: hex('01a2ff'), type: 'private' }, 'pkcs11:token=ca;object=root;id=%01%a2%ff;type=private'],
    ['fixed attribute order', { type: 'public', id: hex('00'), object: 'k', serial: 's1', token: 't' }, 'pkcs11:token=t;serial=s1;object=k;id=%00;type=public'],
    ['every id byte encoded, even printable ones', { id: Buffer.from('AZ') }, 'pkcs11:id=%41%5a'],
    ['spaces, separators and UTF-8 encoded; unreserved kept', { token: 'My Token;1', object: 'été/x_y-z.~' }, 'pkcs11:token=My%20Token%3b1;object=%c3%a9t%c3%a9%2fx_y-z.~'],
    ['query attributes', { object: 'k', modulePath: '/usr/lib/a b.so' }, 'pkcs11:object=k?module-path=%2fusr%2flib%2fa%20b.so'],
    ['nothing', {}, 'pkcs11:'],
  ])('%s', (_what, u, expected) => {
    expect(formatPkcs11Uri(u)).toBe(expected);
  });

  test.each<[Pkcs11Uri]>([
    [{ token: 'ca', object: 'root', id: hex('00ff10'), type: 'private' }],
    [{ token: 'Ünïcode; & = % ?', serial: '0011', object: '#label with spaces', id: Buffer.alloc(0) }],
    [{ object: "a:b[c]@!$'()*+,=&", type: 'cert' }],
    [{ id: Buffer.from(Array.from({ length: 256 }, (_, i) => i)) }],
  ])('round-trips through parsePkcs11Uri: %j', (u) => {
    expect(parsePkcs11Uri(formatPkcs11Uri(u))).toEqual(u);
  });
});
