/**
 * dom: builds elements from text only (textContent, setAttribute), never from HTML strings, so nothing a
 * device id, owner or label contains can become markup or script.
 */
export type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | undefined | ((e: Event) => void)>;

/** h makes an element: attributes, `on<event>` listeners, and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'number' ? String(c) : c);
  return el;
}

/** show replaces what a container holds. */
export function show(container: Element, ...children: Child[]): void {
  container.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false).map((c) => (typeof c === 'number' ? String(c) : c)));
}

/** when: a date as the operator reads it (local time, to the minute), or a dash. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** table: a header row and body rows, wrapped so a phone can scroll it sideways. */
export function table(head: string[], rows: Child[][], id?: string): HTMLElement {
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { id }, h('thead', {}, h('tr', {}, ...head.map((t) => h('th', {}, t)))), h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c)))))),
  );
}

export const stateBadge = (state: string): HTMLElement => h('span', { class: `state state-${state}` }, state);
