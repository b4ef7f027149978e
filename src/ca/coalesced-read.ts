/**
 * CoalescedRead shares one asynchronous read among many callers, with one read in flight at a time: next()
 * joins the read that has not been sent yet, which is sent at the end of the event-loop turn
 * (setImmediate: every request parsed in the turn joins it) or, while another read is in flight, as soon
 * as that one returns, for everyone who called meanwhile. A caller never gets the result of a read that was
 * sent before it called: the freshness barrier of ca/ocsp-service.ts (a status generation read after the
 * request arrived). Under load a read serves every request of one round trip, so the reads per answer fall
 * as the load grows (bench/redis-http: a GET through ioredis costs the node about as much CPU as dozens of
 * kept answers).
 */
export class CoalescedRead<T> {
  /** waiting: the read every caller joins until it is sent (null: nobody waits) */
  private waiting: { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } | null = null;
  /** busy: a read is in flight, or one is scheduled for the end of this turn */
  private busy = false;
  /** sent: reads sent so far (a test's and a benchmark's count) */
  sent = 0;

  constructor(private readonly read: () => Promise<T>) {}

  /** next: the result of a read sent after this call, shared with every caller until it is sent. */
  next(): Promise<T> {
    if (this.waiting) return this.waiting.promise;
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.waiting = { promise, resolve, reject };
    if (!this.busy) {
      this.busy = true;
      setImmediate(this.send);
    }
    return promise;
  }

  /** send: sends the waiting read; when it returns, the next one if anyone called meanwhile */
  private readonly send = (): void => {
    const w = this.waiting;
    if (!w) {
      this.busy = false;
      return;
    }
    // from here on a caller waits for the next read: this one may reach the store before its request
    this.waiting = null;
    this.sent++;
    const settled = (): void => {
      if (this.waiting) this.send();
      else this.busy = false;
    };
    let p: Promise<T>;
    try {
      p = this.read();
    } catch (e) {
      w.reject(e);
      settled();
      return;
    }
    p.then(
      (v) => {
        w.resolve(v);
        settled();
      },
      (e: unknown) => {
        w.reject(e);
        settled();
      },
    );
  };
}
