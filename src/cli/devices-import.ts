import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { z } from 'zod';
import { DeviceCaError, isDeviceCaError } from '../errors/device-ca-error';
import { RegistrationAuthority } from '../ra/registration-authority';

/**
 * devices-import: `device-ca devices import`, the bulk path for registering a fleet that a manufacturer
 * or an inventory system lists (JSON lines or CSV). Two passes over the file: the first checks every
 * line (device id, owner, label, duplicates) and writes nothing when any is wrong, listing the lines;
 * the second registers the devices in batches, each batch one store transaction. Each batch's secrets
 * are written to the secrets file and flushed to disk BEFORE the batch commits, so no committed device
 * is ever without its secret on disk; a batch that fails is cut from the file again. After a crash the
 * file may hold secrets of devices whose batch never committed: those secrets match nothing (re-run
 * with --skip-existing into a new file). With `--secrets-out -` the lines go to stdout after each commit.
 */

export type ImportFormat = 'jsonl' | 'csv';

export interface ImportRow {
  id: string;
  owner?: string;
  label?: string;
}

export interface ImportOptions {
  file: string;
  format: ImportFormat;
  /** secretsOut: a new file (mode 0600, refused if it exists) or '-' for stdout */
  secretsOut: string;
  owner?: string;
  label?: string;
  secretTtlSeconds?: number;
  skipExisting: boolean;
  batch: number;
  actor: string;
  /** progress: called after each batch (the CLI draws a bar on a terminal) */
  progress?: (done: number, total: number) => void;
}

export interface ImportResult {
  lines: number;
  created: number;
  existing: number;
}

/** MAX_LINE: the longest line accepted (an id and an owner are at most 128 characters each). */
const MAX_LINE = 4096;
/** MAX_ERRORS: how many bad lines are listed before the check stops listing. */
const MAX_ERRORS = 20;

const JSON_ROW = z.strictObject({ id: z.string(), owner: z.string().optional(), label: z.string().optional() });
const CSV_COLUMNS = ['id', 'owner', 'label'] as const;

/** importFormat: --format, else from the file name (.csv is CSV, anything else JSON lines). */
export function importFormat(file: string, given?: string): ImportFormat {
  if (given === undefined) return /\.csv$/i.test(file) ? 'csv' : 'jsonl';
  if (given !== 'jsonl' && given !== 'csv') throw new DeviceCaError('bad-request', `--format must be jsonl or csv, not "${given.slice(0, 20)}"`);
  return given;
}

/** splitCsvLine: one CSV record (RFC 4180 quoting, no line breaks inside fields). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) throw new Error('unterminated quoted field');
        v += line.slice(i, q);
        if (line[q + 1] === '"') {
          v += '"';
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      out.push(v);
      if (i === line.length) return out;
      if (line[i] !== ',') throw new Error('text after a quoted field');
      i++;
    } else {
      const c = line.indexOf(',', i);
      if (c < 0) {
        out.push(line.slice(i));
        return out;
      }
      out.push(line.slice(i, c));
      i = c + 1;
    }
  }
}

/** RowReader turns the lines of one file into rows; the CSV header names the columns. */
class RowReader {
  private columns: (typeof CSV_COLUMNS)[number][] | null = null;
  constructor(private readonly format: ImportFormat) {}

  /** row: the line's row, null for a blank line or the CSV header; throws Error with the reason. */
  row(line: string): ImportRow | null {
    if (line.length > MAX_LINE) throw new Error(`line longer than ${MAX_LINE} characters`);
    if (line.trim() === '') return null;
    if (this.format === 'jsonl') {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw new Error('not a JSON object');
      }
      const r = JSON_ROW.safeParse(v);
      if (!r.success) throw new Error(`${r.error.issues[0]?.path.join('.') || 'line'}: ${r.error.issues[0]?.message ?? 'invalid'}`);
      return r.data;
    }
    const fields = splitCsvLine(line.replace(/\r$/, ''));
    if (this.columns === null) {
      const cols = fields.map((f) => f.trim().toLowerCase());
      for (const c of cols) if (!(CSV_COLUMNS as readonly string[]).includes(c)) throw new Error(`unknown column "${c.slice(0, 40)}" in the header (columns: ${CSV_COLUMNS.join(', ')})`);
      if (!cols.includes('id')) throw new Error('the header has no id column');
      if (new Set(cols).size !== cols.length) throw new Error('a column is named twice in the header');
      this.columns = cols as (typeof CSV_COLUMNS)[number][];
      return null;
    }
    if (fields.length !== this.columns.length) throw new Error(`${fields.length} fields, the header has ${this.columns.length}`);
    const row: ImportRow = { id: '' };
    this.columns.forEach((c, i) => {
      if (c === 'id') row.id = fields[i];
      else if (fields[i] !== '') row[c] = fields[i];
    });
    return row;
  }
}

async function* numberedLines(file: string): AsyncGenerator<{ n: number; line: string }> {
  const input = fs.createReadStream(file, { encoding: 'utf8' });
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const line of rl) yield { n: ++n, line: n === 1 ? line.replace(/^\ufeff/, '') : line };
  } finally {
    rl.close();
    input.destroy();
  }
}

/** withDefaults: the row with --owner / --label filled in where the line has none. */
const withDefaults = (r: ImportRow, o: ImportOptions): ImportRow => ({ id: r.id, owner: r.owner ?? o.owner, label: r.label ?? o.label });

/**
 * checkImportFile is the first pass: every line parsed and checked by the RA's registration rules, ids
 * distinct within the file. Returns the number of devices, or throws 'bad-request' listing the bad lines.
 */
export async function checkImportFile(ra: RegistrationAuthority, o: ImportOptions): Promise<number> {
  const reader = new RowReader(o.format);
  const seen = new Map<string, number>();
  const errors: string[] = [];
  let bad = 0;
  for await (const { n, line } of numberedLines(o.file)) {
    try {
      const r = reader.row(line);
      if (r === null) continue;
      ra.registration(withDefaults(r, o));
      const first = seen.get(r.id);
      if (first !== undefined) throw new Error(`device ${r.id} is also on line ${first}`);
      seen.set(r.id, n);
    } catch (e) {
      bad++;
      if (errors.length < MAX_ERRORS) errors.push(`line ${n}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (bad > 0)
    throw new DeviceCaError('bad-request', `${o.file}: ${bad} bad line(s), nothing imported:\n  ${errors.join('\n  ')}${bad > errors.length ? `\n  ... and ${bad - errors.length} more` : ''}`);
  if (seen.size === 0) throw new DeviceCaError('bad-request', `${o.file}: no devices in the file`);
  return seen.size;
}

/** SecretsSink: where the secrets go, with a way to take back the lines of a batch that did not commit. */
interface SecretsSink {
  /** durable: written to a file and flushed to disk (stdout is not: there, lines are written after the commit) */
  durable: boolean;
  write(text: string): void;
  /** mark: the current length (a batch that fails is cut back to it) */
  mark(): number;
  cutTo(mark: number): void;
  close(): void;
}

function openSecretsSink(target: string): SecretsSink {
  if (target === '-') {
    return { durable: false, write: (t) => void fs.writeSync(1, t), mark: () => 0, cutTo: () => undefined, close: () => undefined };
  }
  let fd: number;
  try {
    // only the operator may read it; never over an existing file (another import's secrets)
    fd = fs.openSync(target, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DeviceCaError('bad-request', code === 'EEXIST' ? `--secrets-out ${target} exists: name a new file` : `--secrets-out ${target}: ${code ?? String(e)}`);
  }
  let size = 0;
  return {
    durable: true,
    write(t) {
      const b = Buffer.from(t, 'utf8');
      fs.writeSync(fd, b, 0, b.length, size);
      size += b.length;
      fs.fsyncSync(fd);
    },
    mark: () => size,
    cutTo(m) {
      fs.ftruncateSync(fd, m);
      fs.fsyncSync(fd);
      size = m;
    },
    close: () => fs.closeSync(fd),
  };
}

const csvField = (s: string): string => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** importDevices: both passes; the secrets go to o.secretsOut in the input's format. */
export async function importDevices(ra: RegistrationAuthority, o: ImportOptions): Promise<ImportResult> {
  if (!Number.isInteger(o.batch) || o.batch < 1 || o.batch > 10_000) throw new DeviceCaError('bad-request', '--batch must be an integer from 1 to 10000');
  const total = await checkImportFile(ra, o);
  const sink = openSecretsSink(o.secretsOut);
  const result: ImportResult = { lines: total, created: 0, existing: 0 };
  try {
    if (o.format === 'csv') sink.write('id,secret,secretExpiresAt\n');
    const reader = new RowReader(o.format);
    let batch: ImportRow[] = [];
    const line = (s: { id: string; secret: string; expiresAt: Date }): string =>
      o.format === 'csv' ? `${csvField(s.id)},${s.secret},${s.expiresAt.toISOString()}\n` : `${JSON.stringify({ id: s.id, secret: s.secret, secretExpiresAt: s.expiresAt.toISOString() })}\n`;
    /**
     * commitBatch: the batch's secrets written and flushed first, then the store transaction; a batch the
     * store refuses is cut from the file again, and with --skip-existing the lines of devices that were
     * already registered are taken back out (their secrets were never stored).
     */
    const commitBatch = async (): Promise<void> => {
      if (batch.length === 0) return;
      const prepared = await ra.prepareRegistrations(batch, { secretTtlSeconds: o.secretTtlSeconds });
      const mark = sink.mark();
      if (sink.durable) sink.write(prepared.map(line).join(''));
      let r: { created: string[]; existing: string[] };
      try {
        r = await ra.commitRegistrations(prepared, { actor: o.actor, skipExisting: o.skipExisting });
      } catch (e) {
        sink.cutTo(mark);
        if (isDeviceCaError(e) && e.code === 'conflict')
          throw new DeviceCaError('conflict', `${e.message}; ${result.created} device(s) imported before it (re-run with --skip-existing and a new --secrets-out to go on)`);
        throw e;
      }
      if (!sink.durable || r.existing.length > 0) {
        const made = new Set(r.created);
        sink.cutTo(mark);
        sink.write(
          prepared
            .filter((p) => made.has(p.id))
            .map(line)
            .join(''),
        );
      }
      result.created += r.created.length;
      result.existing += r.existing.length;
      batch = [];
      o.progress?.(result.created + result.existing, total);
    };
    for await (const { line: text } of numberedLines(o.file)) {
      const r = reader.row(text);
      if (r === null) continue;
      batch.push(withDefaults(r, o));
      if (batch.length >= o.batch) await commitBatch();
    }
    await commitBatch();
  } finally {
    sink.close();
  }
  return result;
}
