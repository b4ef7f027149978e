import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * data-dir-ref: key references and file names kept in the store are RELATIVE to the data directory, so
 * a data directory copied or moved elsewhere keeps working (issue 8 point 9). PKCS#11 URIs (RFC 7512)
 * and paths outside the data directory are kept as they are.
 */

/** toStoredRef turns a key ref or file path into what the store keeps: relative when under dataDir. */
export function toStoredRef(dataDir: string, ref: string): string {
  if (ref.startsWith('pkcs11:') || !path.isAbsolute(ref)) return ref;
  const rel = path.relative(path.resolve(dataDir), ref);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : ref;
}

/** fromStoredRef turns a stored ref back into one a key backend or fs call can open. */
export function fromStoredRef(dataDir: string, ref: string): string {
  if (ref.startsWith('pkcs11:') || path.isAbsolute(ref)) return ref;
  return path.join(path.resolve(dataDir), ref);
}

/**
 * importLegacyPath maps an absolute path written by an older device-ca (ca/state.json kept absolute
 * paths) to a stored ref. When the data directory was moved since, the file is looked up by the same
 * name in the same sub-directory (e.g. keys/, ca/) of the current data directory.
 */
export function importLegacyPath(dataDir: string, ref: string, subdir: string): string {
  if (ref.startsWith('pkcs11:')) return ref;
  if (path.isAbsolute(ref) && !fs.existsSync(ref)) {
    const moved = path.join(path.resolve(dataDir), subdir, path.basename(ref));
    if (fs.existsSync(moved)) return toStoredRef(dataDir, moved);
  }
  return toStoredRef(dataDir, ref);
}
