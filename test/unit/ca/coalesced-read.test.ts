import { CoalescedRead } from '../../../src/ca/coalesced-read';

/**
 * CoalescedRead: callers of one event-loop turn share one read; a caller that arrives after the read was
 * sent never gets its result (it may predate the caller), but the next read's; one read in flight at a time.
 */
it('joins the callers of a turn into one read; a later caller gets the next read, sent when the one in flight returns', async () => {
  const pending: ((v: string) => void)[] = [];
  const c = new CoalescedRead(() => new Promise<string>((resolve) => pending.push(resolve)));
  const early = [c.next(), c.next(), c.next()];
  await new Promise((r) => setImmediate(r));
  expect(pending.length).toBe(1); // sent once, for the three
  const late = [c.next(), c.next()]; // the first read is on its way: these must not join it
  await new Promise((r) => setImmediate(r));
  expect(pending.length).toBe(1); // one read in flight at a time
  pending[0]('first');
  expect(await Promise.all(early)).toEqual(['first', 'first', 'first']);
  expect(pending.length).toBe(2); // sent as the first returned, for both late callers
  pending[1]('second');
  expect(await Promise.all(late)).toEqual(['second', 'second']);
  expect(c.sent).toBe(2);
  await new Promise((r) => setImmediate(r));
  expect(pending.length).toBe(2); // nobody waits: nothing more is sent
});

it('a failed read fails its own callers only, whether it rejects or throws before returning a promise', async () => {
  let n = 0;
  const c = new CoalescedRead((): Promise<string> => {
    n++;
    if (n === 1) return Promise.reject(new Error('down'));
    if (n === 2) throw new Error('no connection');
    return Promise.resolve('up');
  });
  await expect(Promise.all([c.next(), c.next()])).rejects.toThrow('down');
  await expect(c.next()).rejects.toThrow('no connection');
  await expect(c.next()).resolves.toBe('up');
});
