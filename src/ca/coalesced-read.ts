/**
 * CoalescedRead shares one asynchronous read among the callers of one event-loop turn: next() joins the
 * read that has not been sent yet, or schedules one (setImmediate: after the turn's I/O callbacks, so
 * every request parsed in the turn joins it), and resolves with what that read returned. A caller never
 * gets the result of a read that was sent before it called: the freshness barrier of ca/ocsp-service.ts
 * (a status generation read after the request arrived), at one read per turn however many requests wait.
 */
export class CoalescedRead<T> {
  /** waiting: the read every caller joins until it is sent; null once sent */
  private waiting: Promise<T> | null = null;
  /** sent: reads sent so far (a test's and a benchmark's count) */
  sent = 0;

  constructor(private readonly read: () => Promise<T>) {}

  /** next: the result of a read sent after this call, shared with every caller until it is sent. */
  next(): Promise<T> {
    if (this.waiting) return this.waiting;
    const p = new Promise<T>((resolve, reject) => {
      setImmediate(() => {
        // from here on a caller waits for the next read: this one may reach the store before its request
        this.waiting = null;
        this.sent++;
        try {
          this.read().then(resolve, reject);
        } catch (e) {
          reject(e);
        }
      });
    });
    this.waiting = p;
    return p;
  }
}
