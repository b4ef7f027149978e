import { BenchFunction, Section, benchJson, formatTable, machineLine } from './bench-table';

/**
 * run: runs every benchmark module in sequence and prints one table (npm run bench).
 *   node dist-bench/bench/run.js                 all modules
 *   node dist-bench/bench/run.js issuance crl    only those whose name contains one of the words
 *   node dist-bench/bench/run.js --json          only JSON on stdout (benchJson: every row, the target rows with
 *                                                their stable id); progress and the table go to stderr
 * Modules are listed here, not discovered from the directory, so a stray file never runs; a module whose
 * file is not there yet is reported as skipped. Exit status 1 if any module that ran failed.
 */
const MODULES: { name: string; file: string; fn: string }[] = [
  { name: 'issuance', file: './issuance', fn: 'benchIssuance' },
  { name: 'crl', file: './crl', fn: 'benchCrl' },
  { name: 'ocsp-codec', file: './ocsp-codec', fn: 'benchOcspCodec' },
  { name: 'pkcs11-sign', file: './pkcs11-sign', fn: 'benchPkcs11Sign' },
  { name: 'est', file: './est', fn: 'benchEst' },
  { name: 'scep', file: './scep', fn: 'benchScep' },
  { name: 'ocsp-http', file: './ocsp-http', fn: 'benchOcspHttp' },
  { name: 'pkcs11-issuance', file: './pkcs11-issuance', fn: 'benchPkcs11Issuance' },
  { name: 'firmware', file: './firmware', fn: 'benchFirmware' },
  { name: 'redis-store', file: './redis-store', fn: 'benchRedisStore' },
  { name: 'redis-http', file: './redis-http', fn: 'benchRedisHttp' },
  { name: 'scale', file: './scale', fn: 'benchScale' },
  { name: 'tpm-attestation', file: './tpm-attestation', fn: 'benchTpmAttestation' },
  { name: 'console-overview', file: './console-overview', fn: 'benchConsoleOverview' },
  { name: 'console-charts', file: './console-overview', fn: 'benchConsoleCharts' },
  { name: 'console-devices', file: './console-devices', fn: 'benchConsoleDevices' },
  { name: 'console-devices-redis', file: './console-devices', fn: 'benchConsoleDevicesRedis' },
];

function load(file: string, fn: string): BenchFunction | string {
  let resolved: string;
  try {
    resolved = require.resolve(file);
  } catch {
    return 'skipped: not present';
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(resolved) as Record<string, unknown>;
  const f = mod[fn];
  return typeof f === 'function' ? (f as BenchFunction) : `failed: ${file} does not export ${fn}()`;
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const filters = argv.filter((a) => !a.startsWith('--'));
  // a filter that is a module's whole name selects that module alone (`est` is not also tpm-attestation); any
  // other filter selects every module whose name contains it
  const matches = (m: { name: string }, f: string): boolean => (MODULES.some((x) => x.name === f) ? m.name === f : m.name.includes(f));
  const selected = filters.length ? MODULES.filter((m) => filters.some((f) => matches(m, f))) : MODULES;
  if (!selected.length) {
    process.stderr.write(`no benchmark matches ${filters.join(' ')}; known: ${MODULES.map((m) => m.name).join(', ')}\n`);
    return 2;
  }
  // with --json, stdout carries the JSON alone so a script can parse it; the human output moves to stderr
  const out = json ? process.stderr : process.stdout;
  const machine = machineLine();
  out.write(`${machine}\n`);
  const sections: Section[] = [];
  let failed = false;
  for (const m of selected) {
    const section: Section = { module: m.name };
    sections.push(section);
    const t0 = process.hrtime.bigint();
    try {
      const f = load(m.file, m.fn);
      if (typeof f === 'string') {
        section.status = f;
        if (f.startsWith('failed')) failed = true;
      } else {
        out.write(`running ${m.name} ...\n`);
        section.rows = await f();
      }
    } catch (e) {
      failed = true;
      section.status = `failed: ${(e as Error)?.message ?? String(e)}`.split('\n')[0];
      process.stderr.write(`${m.name}: ${(e as Error)?.stack ?? String(e)}\n`);
    }
    section.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  out.write(`\n${formatTable(sections)}\n`);
  if (json) process.stdout.write(`${JSON.stringify(benchJson(machine, sections), null, 2)}\n`);
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
