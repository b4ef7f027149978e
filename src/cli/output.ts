/** output: one way to print records, as aligned text for people or JSON for scripts. */
const show = (v: unknown): string => (v instanceof Date ? v.toISOString() : v === null || v === undefined ? '-' : String(v));

export function printRecords<T extends object>(json: boolean, rows: T[], columns: (keyof T & string)[]): void {
  if (json) {
    console.log(JSON.stringify(rows));
    return;
  }
  if (rows.length === 0) {
    console.log('(none)');
    return;
  }
  const cells = rows.map((r) => columns.map((c) => show(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  console.log(columns.map((c, i) => c.padEnd(widths[i])).join('  '));
  for (const row of cells)
    console.log(
      row
        .map((v, i) => v.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    );
}

export function printRecord(json: boolean, rec: Record<string, unknown>): void {
  if (json) {
    console.log(JSON.stringify(rec, null, 2));
    return;
  }
  for (const [k, v] of Object.entries(rec)) {
    if (Array.isArray(v)) {
      console.log(`${k}:`);
      for (const item of v)
        console.log(
          '  - ' +
            Object.entries(item as object)
              .map(([a, b]) => `${a}=${show(b)}`)
              .join(' '),
        );
    } else if (typeof v === 'string' && v.includes('\n')) console.log(`${k}:\n${v.trimEnd()}`);
    else console.log(`${k}: ${show(v)}`);
  }
}
