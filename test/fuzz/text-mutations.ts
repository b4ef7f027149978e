import { SeededRandom } from './seeded-random';

/**
 * text-mutations hold the hostile strings of the campaign (prototype names, huge and odd numbers, path
 * traversal, control characters, over-long values), the ways a base64 body goes wrong (RFC 8951 §3.1
 * bodies), and JSON-body mutations for the admin API. Each returns a name for the report.
 */

/** PROTO_NAMES: names that break code which indexes a plain object with user input. */
export const PROTO_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype', 'valueOf', '__defineGetter__', 'isPrototypeOf'];

/** HOSTILE_SEGMENTS: one path segment each (already in request-target form: escaped as a client would or not). */
export const HOSTILE_SEGMENTS = [
  ...PROTO_NAMES,
  '..',
  '.',
  '..%2f..%2f..%2fetc%2fpasswd',
  '..%2F',
  '%2e%2e',
  '%2e%2e%2f%2e%2e%2f',
  '%252e%252e%252f',
  '..%5c..%5c',
  'a%2fb',
  '%2f',
  '%00',
  'a%00b',
  '%zz',
  '%',
  '%e0%80%af',
  '%c0%ae%c0%ae',
  '%ff%fe',
  '%E2%80%AE',
  '%20',
  '\u00e9', // raw latin-1 byte in the request line
  '',
  'x'.repeat(300),
  'x'.repeat(8000),
  '1e300',
  '-1',
  '9007199254740993',
  'NaN',
  'Infinity',
  '0x10',
  '00000000000000000000000000000000000000000001',
  ';',
  '?',
  '#frag',
  '*',
];

/** ODD_VALUES: JSON values for a field (numbers that do not fit, wrong types, prototype names, control characters). */
export const ODD_VALUES: unknown[] = [
  1e300,
  -1e300,
  -1,
  0,
  -0,
  2 ** 53 + 1,
  1.5,
  'NaN',
  'Infinity',
  '-1',
  '1e300',
  '9007199254740993',
  '',
  ' ',
  '\u0000',
  '\u0000\u0001\u001f',
  '\ud800',
  '\u202e',
  'x'.repeat(10_000),
  null,
  true,
  false,
  [],
  [1, 2],
  {},
  { a: 1 },
  ...PROTO_NAMES,
  '../../etc/passwd',
  '%2f',
  '7d',
  '1e300d',
  '99999999999999999999y',
  '-5m',
  '0s',
];

/** ODD_NUMBER_TEXT: raw JSON number tokens JSON.stringify never writes (sent by text replacement). */
export const ODD_NUMBER_TEXT = ['1e999', '-1e999', '1E+308', '123456789012345678901234567890', '-0.0', '1e-400', '0.0000000000000000000000001', '00012'];

export interface TextMutated {
  text: string;
  how: string;
}

/** mutateBase64: the base64 of der, encoded wrongly in one of the ways RFC 8951 clients (and attackers) do. */
export function mutateBase64(rng: SeededRandom, der: Buffer): TextMutated {
  const b64 = der.toString('base64');
  const wrap = (s: string, cols: number, eol: string) => s.replace(new RegExp(`(.{${cols}})`, 'g'), `$1${eol}`);
  const choices: [string, () => string][] = [
    ['one line', () => b64],
    ['wrapped at 64 with CRLF', () => wrap(b64, 64, '\r\n')],
    ['wrapped at 1', () => wrap(b64, 1, '\n')],
    ['padding removed', () => b64.replace(/=+$/, '')],
    ['extra padding', () => b64 + '===='],
    ['= in the middle', () => b64.slice(0, b64.length >> 1) + '=' + b64.slice(b64.length >> 1)],
    ['length % 4 == 1', () => b64 + 'A'],
    ['url-safe alphabet', () => b64.replace(/\+/g, '-').replace(/\//g, '_')],
    ['invalid characters', () => b64.slice(0, 10) + rng.pick(['*', '!', '\u0000', '\u00ff', '%', '.', '\\']) + b64.slice(10)],
    ['PEM armour', () => `-----BEGIN CERTIFICATE REQUEST-----\n${wrap(b64, 64, '\n')}\n-----END CERTIFICATE REQUEST-----\n`],
    ['PEM armour not closed', () => `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n`],
    ['PEM armour twice', () => `-----BEGIN X-----\n-----BEGIN X-----\n${b64}\n-----END X-----\n-----END X-----\n`],
    ['PEM armour with headers', () => `-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n\n${b64}\n-----END CERTIFICATE REQUEST-----\n`],
    ['tabs and spaces', () => b64.split('').join(rng.pick([' ', '\t', '\r', '\v', '\f']))],
    ['base64 of base64', () => Buffer.from(b64).toString('base64')],
    ['only padding', () => '===='],
    ['only whitespace', () => '\r\n \t\r\n'],
    ['unicode', () => b64 + '\u00e9\u4e2d'],
  ];
  const [how, make] = rng.pick(choices);
  return { text: make(), how: `base64: ${how}` };
}

/** deepJson: nested arrays or objects depth deep, as text (JSON.stringify would recurse to build it). */
export function deepJson(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

/**
 * mutateJson: a body for an admin route from its valid body object: a field set to an odd value, a
 * prototype-named key added, the text nested deep, truncated or made invalid.
 */
export function mutateJson(rng: SeededRandom, valid: Record<string, unknown>): TextMutated {
  const keys = Object.keys(valid);
  const key = keys.length && rng.chance(0.7) ? rng.pick(keys) : rng.pick([...PROTO_NAMES, 'id', 'owner', 'label', 'secretTtl', 'to', 'reason', 'x'.repeat(1000)]);
  const choices: [string, () => string][] = [
    [
      `"${key.slice(0, 40)}" set to an odd value`,
      () => {
        const v = rng.pick(ODD_VALUES);
        return JSON.stringify({ ...valid, [key]: v });
      },
    ],
    [
      `"${key.slice(0, 40)}" set to an odd number token`,
      () => {
        const n = rng.pick(ODD_NUMBER_TEXT);
        return JSON.stringify({ ...valid, [key]: 0 }).replace(`${JSON.stringify(key)}:0`, `${JSON.stringify(key)}:${n}`);
      },
    ],
    [
      'a prototype-named key',
      () => {
        const name = rng.pick(PROTO_NAMES);
        const text = JSON.stringify(valid);
        const val = JSON.stringify(rng.pick<unknown>([{ polluted: true }, { prototype: { polluted: true } }, 'x', 1, null]));
        return text.length > 2 ? `{"${name}":${val},${text.slice(1)}` : `{"${name}":${val}}`;
      },
    ],
    [
      'duplicate key',
      () => {
        const text = JSON.stringify(valid);
        return text.length > 2 ? `${text.slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(rng.pick(ODD_VALUES))}}` : text;
      },
    ],
    [
      'nested deep in a field',
      () => {
        const depth = rng.pick([100, 1000, 5000, 20_000]);
        const text = JSON.stringify({ ...valid, [key]: 0 });
        return text.replace(`${JSON.stringify(key)}:0`, `${JSON.stringify(key)}:${deepJson(depth, rng.pick(['array', 'object'] as const))}`);
      },
    ],
    ['nested deep as the body', () => deepJson(rng.pick([1000, 10_000, 30_000]), rng.pick(['array', 'object'] as const))],
    ['not an object', () => rng.pick(['[]', '[{}]', '"x"', '1', '1e300', 'null', 'true', '""'])],
    ['invalid JSON', () => rng.pick(['{', '{"a":}', "{'a':1}", '{"a":NaN}', '{"a":Infinity}', '{"a":undefined}', '{"a":1,}', '\ufeff{}', '{"a":"\u0000"}', '{"a":"\\ud800"}', '{"a":"\\u00"}'])],
    [
      'truncated',
      () => {
        const text = JSON.stringify(valid);
        return text.slice(0, rng.int(text.length));
      },
    ],
    ['every field odd', () => JSON.stringify(Object.fromEntries(keys.map((k) => [k, rng.pick(ODD_VALUES)])))],
  ];
  const [how, make] = rng.pick(choices);
  return { text: make(), how: `json: ${how}` };
}

/** CONTENT_TYPES: what a client may put in Content-Type (null: no header at all). */
export const CONTENT_TYPES: (string | null)[] = [
  null,
  '',
  'application/pkcs10',
  'application/json',
  'application/ocsp-request',
  'APPLICATION/PKCS10',
  'application/pkcs10; charset=utf-8',
  'application/pkcs10;;;;',
  'application/json; charset=utf-16',
  'application/jsonx',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'text/plain',
  '*/*',
  '/',
  ';',
  'application/pkcs10\t',
  'a'.repeat(5000),
  '__proto__',
  'constructor/toString',
];

/** oddHeaders: extra request headers that stress the HTTP layer (not any one protocol). */
export function oddHeaders(rng: SeededRandom): { headers: [string, string][]; how: string } {
  const choices: [string, () => [string, string][]][] = [
    ['a 10 KB header', () => [['X-Fuzz', 'a'.repeat(10_000)]]],
    ['a 20 KB header (over the default 16 KB head limit)', () => [['X-Fuzz', 'a'.repeat(20_000)]]],
    ['300 headers', () => Array.from({ length: 300 }, (_, i) => [`X-F${i}`, String(i)] as [string, string])],
    ['odd X-Request-Id', () => [['X-Request-Id', rng.pick(['__proto__', '../../x', 'a'.repeat(5000), '', '\u00ff'])]]],
    [
      'Authorization garbage',
      () => [['Authorization', rng.pick(['Basic', 'Basic ', 'Basic ====', 'Basic !!!', `Basic ${'A'.repeat(8000)}`, 'Bearer', 'Bearer ', `Bearer ${'x'.repeat(8000)}`, 'Negotiate abc', '__proto__'])]],
    ],
    ['Content-Encoding gzip (body not gzip)', () => [['Content-Encoding', 'gzip']]],
    ['Expect: 100-continue', () => [['Expect', '100-continue']]],
    ['Expect: something else', () => [['Expect', 'x-unknown']]],
    ['Accept odd', () => [['Accept', rng.pick(['*/*;q=NaN', 'a'.repeat(3000), '__proto__'])]]],
    ['If-None-Match odd', () => [['If-None-Match', rng.pick(['*', '"__proto__"', 'W/"x"', '"' + 'x'.repeat(3000) + '"'])]]],
    ['Range', () => [['Range', rng.pick(['bytes=0-0', 'bytes=-1', 'bytes=99999999999999999999-', 'bytes=0-1,2-3,4-5'])]]],
  ];
  const [how, make] = rng.pick(choices);
  return { headers: make(), how: `headers: ${how}` };
}
