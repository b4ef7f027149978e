import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * malformedTpm is the one way a TPM parser fails: a typed 'bad-request', never a RangeError from a
 * Buffer read, so hostile evidence cannot crash the service (ARCHITECTURE.md rule 11).
 */
export function malformedTpm(what: string): never {
  throw new DeviceCaError('bad-request', `malformed TPM structure: ${what}`);
}

/**
 * TpmReader walks TPM 2.0 marshalled data (TPM 2.0 Part 1 §19: everything big-endian, TPM2B = UINT16 size
 * then bytes). Every read is bounds-checked; sizes come from the input, so each TPM2B is also capped by
 * the caller's limit before any allocation.
 */
export class TpmReader {
  private p = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get offset(): number {
    return this.p;
  }

  get remaining(): number {
    return this.buf.length - this.p;
  }

  private need(n: number, field: string): void {
    if (this.p + n > this.buf.length) malformedTpm(`${this.what}: truncated at ${field}`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.p++];
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16BE(this.p);
    this.p += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.p);
    this.p += 4;
    return v;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigUInt64BE(this.p);
    this.p += 8;
    return v;
  }

  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const v = this.buf.subarray(this.p, this.p + n);
    this.p += n;
    return v;
  }

  /** tpm2b reads a UINT16-sized buffer, refusing one longer than max (the TPM's own size for that type). */
  tpm2b(field: string, max: number): Buffer {
    const n = this.u16(field);
    if (n > max) malformedTpm(`${this.what}: ${field} of ${n} bytes exceeds ${max}`);
    return this.bytes(n, field);
  }

  /** end insists the structure was consumed exactly: trailing bytes are a sign of a splice. */
  end(): void {
    if (this.p !== this.buf.length) malformedTpm(`${this.what}: ${this.buf.length - this.p} trailing bytes`);
  }
}
