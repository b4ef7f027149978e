import { Logger } from 'pino';

/**
 * TlsFailureLog writes one warn line per failed TLS handshake on the HTTPS listener: the peer address and
 * OpenSSL's reason (a client certificate with a bad signature, no shared cipher, a handshake timeout).
 * Without it such a client only sees the connection drop and the operator sees nothing. At most `burst`
 * lines are written per `windowMs`; the rest are counted and the count rides on the next line written,
 * so a scanner or a misconfigured fleet cannot flood the log.
 */
export class TlsFailureLog {
  private windowStart = -Infinity;
  private written = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly burst = 20,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  report(err: Error & { code?: string }, remote: { address?: string; port?: number }): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.written = 0;
    }
    if (this.written >= this.burst) {
      this.suppressed++;
      return;
    }
    this.written++;
    const line: Record<string, unknown> = { remote: remote.address, remotePort: remote.port, code: err.code, reason: err.message };
    if (this.suppressed > 0) line.suppressed = this.suppressed; // failures not logged since the last line
    this.suppressed = 0;
    this.log.warn(line, 'TLS handshake failed');
  }
}
