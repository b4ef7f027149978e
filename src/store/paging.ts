import { DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest } from './store';

/**
 * pageLimit is the number of items a store answers for a request: DEFAULT_PAGE_LIMIT when none is asked,
 * clamped to 1..MAX_PAGE_LIMIT. Stores read one row more than this to know whether `next` must be set.
 */
export function pageLimit(p: PageRequest): number {
  const n = Math.floor(Number(p.limit ?? DEFAULT_PAGE_LIMIT));
  if (!Number.isFinite(n)) return DEFAULT_PAGE_LIMIT;
  return Math.min(Math.max(n, 1), MAX_PAGE_LIMIT);
}

/**
 * pageOf turns the rows a store read (up to limit + 1) into a page: the extra row only says that more
 * exist, and `next` is the cursor of the last item returned.
 */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (item: T) => string): Page<T> {
  if (rows.length <= limit) return { items: rows, next: null };
  const items = rows.slice(0, limit);
  return { items, next: cursorOf(items[items.length - 1]) };
}

/**
 * everyItem follows `next` from the first page until it is null and yields every item, so a caller that
 * needs all rows (audit verify, a device's certificates) never stops at a page boundary.
 */
export async function* everyItem<T>(list: (after: string | undefined) => Promise<Page<T>>): AsyncGenerator<T> {
  let after: string | undefined;
  for (;;) {
    const page = await list(after);
    yield* page.items;
    if (page.next === null) return;
    after = page.next;
  }
}

/** collectItems gathers up to `max` items (default: all) by following `next`; returns them and the cursor after the last. */
export async function collectItems<T>(list: (after: string | undefined, want: number) => Promise<Page<T>>, max = Infinity, start?: string): Promise<Page<T>> {
  const items: T[] = [];
  let after = start;
  for (;;) {
    const want = Math.min(max - items.length, MAX_PAGE_LIMIT);
    const page = await list(after, want);
    items.push(...page.items);
    if (page.next === null) return { items, next: null };
    if (items.length >= max) return { items, next: page.next };
    after = page.next;
  }
}
