import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';

/**
 * run-time-dependencies: package.json `dependencies` is exactly what src/ loads at run time. The Docker image
 * and `npm prune --omit=dev` keep only these, so a package src/ imports but lists as a devDependency breaks the
 * service in production, and one listed but never imported ships for nothing (as @peculiar/x509, pkijs, asn1js,
 * reflect-metadata and ioredis did while only the tests used them).
 */
const ROOT = path.join(__dirname, '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** packageOf: `@scope/name/deep/path` -> `@scope/name`, `name/deep` -> `name` */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** runTimeImports: packages a file loads when it runs; `import type` is erased by tsc and does not count */
function runTimeImports(text: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*import\s+(?!type\s)[^'"]*?from\s+'([^']+)'/gm,
    /^\s*import\s+'([^']+)'/gm,
    /^\s*export\s+(?!type\s)[^'"]*?from\s+'([^']+)'/gm,
    /\brequire\(\s*'([^']+)'\s*\)/g,
    /\bimport\(\s*'([^']+)'\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]);
  return found.filter((s) => !s.startsWith('.') && !s.startsWith('node:') && !builtinModules.includes(s)).map(packageOf);
}

describe('package.json dependencies', () => {
  const imported = new Map<string, string>(); // package -> first file importing it
  for (const f of sourceFiles(path.join(ROOT, 'src'))) for (const p of runTimeImports(fs.readFileSync(f, 'utf8'))) if (!imported.has(p)) imported.set(p, path.relative(ROOT, f));

  it('the scanner sees src/ load its known run-time packages (so an empty result cannot pass)', () => {
    expect([...imported.keys()]).toEqual(expect.arrayContaining(['express', 'better-sqlite3', 'zod', 'graphene-pk11']));
  });

  it('every package src/ imports is a dependency, not only a devDependency', () => {
    const missing = [...imported].filter(([p]) => !(p in (pkg.dependencies ?? {}))).map(([p, f]) => `${p} (${f})`);
    expect(missing).toEqual([]);
  });

  it('every dependency is imported by src/ (test-only packages belong in devDependencies)', () => {
    expect(Object.keys(pkg.dependencies ?? {}).filter((p) => !imported.has(p))).toEqual([]);
  });
});
