import * as crypto from 'node:crypto';

/**
 * SeededRandom is the fuzz campaign's only source of randomness: sfc32 seeded from a 32-bit number, so
 * that a failing case is reproduced by its seed alone (FUZZ_SEED, FUZZ_ONLY). Math.random never appears
 * in test/fuzz.
 */
export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next();
  }

  /** next: a uniform 32-bit unsigned integer (sfc32, PractRand-clean and tiny). */
  next(): number {
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    this.d >>>= 0;
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** int: uniform in [0, n) */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.next() / 0x1_0000_0000) * n);
  }

  /** range: uniform in [lo, hi] */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

/** deriveSeed: the seed of one case, from the campaign seed and the case's coordinates (protocol, index). */
export function deriveSeed(seed: number, ...parts: (string | number)[]): number {
  return crypto
    .createHash('sha256')
    .update(`${seed}/${parts.join('/')}`)
    .digest()
    .readUInt32BE(0);
}
