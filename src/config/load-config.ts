import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { ZodError, ZodType } from 'zod';
import { DeviceCaError } from '../errors/device-ca-error';
import { Config, configSchema } from './schema';

/**
 * ENV_ALIASES: the environment names in the public contract (shared/CONTRACT.md) that do not follow
 * the generic DEVICE_CA_<PATH> rule.
 */
const ENV_ALIASES: Record<string, string[]> = {
  DEVICE_CA_DATA: ['dataDir'],
  DEVICE_CA_HTTPS_PORT: ['https', 'port'],
  DEVICE_CA_HTTP_PORT: ['http', 'port'],
  DEVICE_CA_PUBLIC_URL: ['publicUrl'],
  DEVICE_CA_PKCS11_MODULE: ['keys', 'pkcs11', 'module'],
  DEVICE_CA_PKCS11_TOKEN: ['keys', 'pkcs11', 'token'],
};

const snake = (k: string): string => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

/** envName is the generic environment variable for a config path: https.bodyLimit -> DEVICE_CA_HTTPS_BODY_LIMIT. */
export function envName(pathParts: string[]): string {
  return 'DEVICE_CA_' + pathParts.map(snake).join('_');
}

type SchemaNode = { def: { type: string; innerType?: SchemaNode; in?: SchemaNode }; shape?: Record<string, SchemaNode> };
type Leaf = { path: string[]; kind: string };

/** unwrap looks through optional/default/prefault/nullable wrappers to the schema that holds the value. */
function unwrap(n: SchemaNode): SchemaNode {
  let cur = n;
  while (['optional', 'default', 'prefault', 'nullable'].includes(cur.def.type) && cur.def.innerType) cur = cur.def.innerType;
  return cur;
}

/** leaves lists every scalar or list key of the schema (label maps excepted): the keys the environment may set. */
function leaves(node: SchemaNode, prefix: string[] = []): Leaf[] {
  const n = unwrap(node);
  if (n.def.type === 'object' && n.shape) return Object.entries(n.shape).flatMap(([k, v]) => leaves(v, [...prefix, k]));
  if (n.def.type === 'record') return [];
  // a duration is a pipe from string|number: set from the environment as given
  return [{ path: prefix, kind: n.def.type === 'pipe' ? 'string' : n.def.type }];
}

/** coerceEnv turns an environment string into the type the schema expects at that path. */
function coerceEnv(raw: string, kind: string): unknown {
  if (kind === 'number') return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
  if (kind === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw;
  if (kind === 'array')
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return raw;
}

function setPath(obj: Record<string, unknown>, p: string[], value: unknown): void {
  let cur = obj;
  for (const k of p.slice(0, -1)) {
    if (cur[k] === undefined || typeof cur[k] !== 'object') cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[p[p.length - 1]] = value;
}

function formatZod(e: ZodError, source: string): string {
  return e.issues
    .map((i) => {
      const keys = (i as { keys?: string[] }).keys;
      // one line per unknown key, each with its full path
      if (keys && keys.length) return keys.map((k) => `${source}: ${[...i.path, k].join('.')}: unknown key`).join('\n');
      return `${source}: ${i.path.join('.') || '(root)'}: ${i.message}`;
    })
    .join('\n');
}

/**
 * withoutBuiltInTpmLabel: the built-in EST labels are `default` and `tpm`. A file (or override) that lists
 * its own profiles without a `tpm` profile, and no labels, keeps only the `default` label (as before the built-in
 * `tpm` label existed) instead of failing on a label whose profile it did not write.
 */
function withoutBuiltInTpmLabel(raw: Record<string, unknown>): Record<string, unknown> {
  const profiles = raw.profiles;
  const est = raw.est as Record<string, unknown> | undefined;
  if (!profiles || typeof profiles !== 'object' || Object.hasOwn(profiles, 'tpm')) return raw;
  if (est !== undefined && (typeof est !== 'object' || est === null || est.labels !== undefined)) return raw;
  return { ...raw, est: { ...est, labels: { default: { profile: 'default' } } } };
}

export interface LoadOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Record<string, unknown>;
}

/**
 * loadConfig reads the YAML file (if any), applies environment overrides, validates against the strict
 * schema and returns a deep-frozen Config. Any problem is a DeviceCaError('config') naming the key.
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.DEVICE_CA_CONFIG;
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new DeviceCaError('config', `cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    try {
      raw = (YAML.parse(text) as Record<string, unknown>) ?? {};
    } catch (e) {
      throw new DeviceCaError('config', `${file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new DeviceCaError('config', `${file}: top level must be a mapping`);
  }
  raw = withoutBuiltInTpmLabel(raw);
  const fileCheck = configSchema.safeParse(raw);
  if (!fileCheck.success) throw new DeviceCaError('config', formatZod(fileCheck.error, file ?? 'config'));

  const merged = structuredClone(raw);
  const fromEnv: string[] = [];
  const all = leaves(configSchema as unknown as SchemaNode);
  const kindOf = (p: string[]) => all.find((l) => l.path.join('.') === p.join('.'))?.kind ?? 'string';
  const sources: [string, string[]][] = [...all.map((l): [string, string[]] => [envName(l.path), l.path]), ...Object.entries(ENV_ALIASES)];
  for (const [name, p] of sources) {
    if (env[name] !== undefined && env[name] !== '') {
      setPath(merged, p, coerceEnv(env[name]!, kindOf(p)));
      fromEnv.push(name);
    }
  }
  const storeUrl = env.DEVICE_CA_STORE;
  if (storeUrl !== undefined && storeUrl !== '') {
    // DEVICE_CA_STORE (public contract): a redis:// URL selects the shared store, anything else is an SQLite file
    if (/^rediss?:\/\//.test(storeUrl)) {
      setPath(merged, ['store', 'type'], 'redis');
      setPath(merged, ['store', 'url'], storeUrl);
    } else {
      setPath(merged, ['store', 'type'], 'sqlite');
      setPath(merged, ['store', 'path'], storeUrl);
    }
    fromEnv.push('DEVICE_CA_STORE');
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) if (v !== undefined) setPath(merged, k.split('.'), v);
  const parsed = configSchema.safeParse(withoutBuiltInTpmLabel(merged));
  if (!parsed.success) throw new DeviceCaError('config', formatZod(parsed.error, fromEnv.length ? `environment (${[...new Set(fromEnv)].join(', ')})` : 'config'));
  const cfg = parsed.data;
  cfg.dataDir = path.resolve(cfg.dataDir);
  if (!path.isAbsolute(cfg.store.path)) cfg.store.path = path.join(cfg.dataDir, cfg.store.path);
  return deepFreeze(cfg);
}

/** publicBaseUrl is where relying parties fetch CRLs, OCSP and CA certificates. */
export function publicBaseUrl(cfg: Config): string {
  return (cfg.publicUrl ?? `http://localhost:${cfg.http.port}`).replace(/\/+$/, '');
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

export type { ZodType };
