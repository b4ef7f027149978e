/** parseDuration reads "90s", "15m", "12h", "7d", "1y" (365 d) or a bare number of seconds; returns seconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new Error(`bad duration ${input}`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)?\s*$/.exec(input);
  if (!m) throw new Error(`bad duration "${input}" (use e.g. 90s, 15m, 12h, 7d, 1y)`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[(m[2] ?? 's') as 's'];
  return Math.round(Number(m[1]) * unit);
}
