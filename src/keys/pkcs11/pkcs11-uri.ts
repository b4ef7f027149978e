import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * pkcs11-uri: the PKCS#11 URI (RFC 7512) that names a key in config and in `SigningKey.ref`, so
 * operators can paste what `p11tool --list-all` or `pkcs11-tool` users already write. device-ca
 * understands the path attributes that pick a token and an object (token, serial, object, id, type);
 * anything else is rejected by name rather than silently ignored, because an ignored attribute could
 * make a URI match a different key than its author meant.
 */

/** Pkcs11ObjectType is the RFC 7512 §2.3 `type` attribute, the object class named for humans. */
export type Pkcs11ObjectType = 'public' | 'private' | 'cert' | 'secret-key' | 'data';
const OBJECT_TYPES: readonly Pkcs11ObjectType[] = ['public', 'private', 'cert', 'secret-key', 'data'];

export interface Pkcs11Uri {
  /** token is CK_TOKEN_INFO.label without its blank padding. */
  token?: string;
  /** serial is CK_TOKEN_INFO.serialNumber. */
  serial?: string;
  /** object is CKA_LABEL. */
  object?: string;
  /** id is CKA_ID, raw bytes. */
  id?: Buffer;
  type?: Pkcs11ObjectType;
  /** modulePath and moduleName are RFC 7512 §2.3 query hints; the backend's own config decides the module. */
  modulePath?: string;
  moduleName?: string;
}

const PATH_ATTRS = new Set(['token', 'serial', 'object', 'id', 'type']);
// Standard RFC 7512 attributes device-ca does not match on: named so the error can say so plainly.
const UNSUPPORTED_PATH_ATTRS = new Set(['manufacturer', 'model', 'library-manufacturer', 'library-description', 'library-version', 'slot-description', 'slot-manufacturer', 'slot-id']);
const MAX_URI_LENGTH = 4096;

const fail = (message: string): never => {
  throw new DeviceCaError('config', `invalid PKCS#11 URI: ${message}`);
};

/**
 * parsePkcs11Uri reads an RFC 7512 URI. It rejects duplicate attributes (§2.3: each path attribute at
 * most once), malformed percent-encoding, characters that §2.3 requires to be percent-encoded, and
 * PINs in the query: a URI is logged and stored in config, a PIN must not be, so pin-value and
 * pin-source are refused and the PIN comes from the backend's own `pin` option.
 */
export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (typeof uri !== 'string') fail('not a string');
  if (uri.length > MAX_URI_LENGTH) fail(`longer than ${MAX_URI_LENGTH} characters`);
  // RFC 3986 §3.1: scheme names are case-insensitive
  if (uri.slice(0, 7).toLowerCase() !== 'pkcs11:') fail('must start with "pkcs11:"');
  const rest = uri.slice(7);
  const q = rest.indexOf('?');
  const pathPart = q < 0 ? rest : rest.slice(0, q);
  const queryPart = q < 0 ? undefined : rest.slice(q + 1);
  if (pathPart.includes('#') || queryPart?.includes('#')) fail('a fragment ("#") is not allowed');

  const out: Pkcs11Uri = {};
  const seen = new Set<string>();
  if (pathPart !== '') {
    for (const pair of pathPart.split(';')) {
      const { name, raw } = splitAttr(pair, 'path');
      if (seen.has(name)) fail(`attribute "${name}" appears more than once`);
      seen.add(name);
      if (UNSUPPORTED_PATH_ATTRS.has(name)) fail(`attribute "${name}" is not supported; select the token by "token" or "serial"`);
      if (name.startsWith('x-')) fail(`vendor attribute "${name}" is not supported`);
      if (!PATH_ATTRS.has(name)) fail(`unknown path attribute "${name}"`);
      checkChars(raw, name, PATH_CHAR);
      const bytes = percentDecode(raw, name);
      switch (name) {
        case 'id':
          out.id = bytes;
          break;
        case 'type': {
          const t = utf8(bytes, name);
          if (!(OBJECT_TYPES as readonly string[]).includes(t)) fail(`type must be one of ${OBJECT_TYPES.join(', ')}`);
          out.type = t as Pkcs11ObjectType;
          break;
        }
        default:
          out[name as 'token' | 'serial' | 'object'] = utf8(bytes, name);
      }
    }
  }
  if (queryPart !== undefined && queryPart !== '') {
    for (const pair of queryPart.split('&')) {
      const { name, raw } = splitAttr(pair, 'query');
      if (name === 'pin-value' || name === 'pin-source') {
        // Never echo the value: it may be the PIN itself.
        fail(`"${name}" is not accepted; give the PIN through the pkcs11 backend's pin setting (environment or file)`);
      }
      if (name.startsWith('x-')) fail(`vendor query attribute "${name}" is not supported`);
      if (name !== 'module-path' && name !== 'module-name') fail(`unknown query attribute "${name}"`);
      if (seen.has(name)) fail(`attribute "${name}" appears more than once`);
      seen.add(name);
      checkChars(raw, name, QUERY_CHAR);
      const value = utf8(percentDecode(raw, name), name);
      if (name === 'module-path') out.modulePath = value;
      else out.moduleName = value;
    }
  }
  return out;
}

/**
 * formatPkcs11Uri writes the canonical form device-ca stores as a key ref: path attributes in a fixed
 * order (token, serial, object, id, type), every byte outside RFC 3986 `unreserved` percent-encoded,
 * and every id byte percent-encoded (as p11tool does), so equal keys always give equal strings.
 */
export function formatPkcs11Uri(u: Pkcs11Uri): string {
  const parts: string[] = [];
  if (u.token !== undefined) parts.push(`token=${percentEncode(Buffer.from(u.token, 'utf8'))}`);
  if (u.serial !== undefined) parts.push(`serial=${percentEncode(Buffer.from(u.serial, 'utf8'))}`);
  if (u.object !== undefined) parts.push(`object=${percentEncode(Buffer.from(u.object, 'utf8'))}`);
  if (u.id !== undefined) parts.push(`id=${percentEncode(u.id, true)}`);
  if (u.type !== undefined) {
    if (!OBJECT_TYPES.includes(u.type)) throw new DeviceCaError('internal', `bad PKCS#11 object type ${String(u.type)}`);
    parts.push(`type=${u.type}`);
  }
  const query: string[] = [];
  if (u.modulePath !== undefined) query.push(`module-path=${percentEncode(Buffer.from(u.modulePath, 'utf8'))}`);
  if (u.moduleName !== undefined) query.push(`module-name=${percentEncode(Buffer.from(u.moduleName, 'utf8'))}`);
  return `pkcs11:${parts.join(';')}${query.length ? `?${query.join('&')}` : ''}`;
}

function splitAttr(pair: string, where: 'path' | 'query'): { name: string; raw: string } {
  const eq = pair.indexOf('=');
  if (eq <= 0) fail(`${where} component "${pair.slice(0, 40)}" is not name=value`);
  const name = pair.slice(0, eq);
  if (!/^[a-z][a-z0-9_-]*$/i.test(name)) fail(`bad attribute name "${name.slice(0, 40)}"`);
  return { name, raw: pair.slice(eq + 1) };
}

// RFC 7512 §2.3: pk11-pchar = unreserved / pk11-path-res-avoid / pct-encoded, where
// pk11-path-res-avoid = ":" "[" "]" "@" "!" "$" "'" "(" ")" "*" "+" "," "=" "&". ";" and "/" must be encoded.
const PATH_CHAR = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=&%]*$/;
// pk11-qchar = unreserved / pk11-query-res-avoid / pct-encoded, with "/" "?" "|" allowed as well; "&" must be encoded.
const QUERY_CHAR = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=/?|%]*$/;

function checkChars(raw: string, name: string, allowed: RegExp): void {
  if (!allowed.test(raw)) {
    const bad = [...raw].find((c) => !allowed.test(c)) ?? '?';
    fail(`attribute "${name}" contains "${bad === ' ' ? 'space' : bad}", which must be percent-encoded`);
  }
}

function percentDecode(raw: string, name: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) fail(`attribute "${name}" has a malformed percent-encoding`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(c); // checkChars admitted ASCII only
    }
  }
  return Buffer.from(out);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
function utf8(bytes: Buffer, name: string): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    return fail(`attribute "${name}" is not valid UTF-8 after percent-decoding`);
  }
}

function percentEncode(bytes: Buffer, all = false): string {
  let s = '';
  for (const b of bytes) {
    const unreserved = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
    s += !all && unreserved ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`;
  }
  return s;
}
