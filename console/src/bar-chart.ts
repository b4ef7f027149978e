/**
 * bar-chart: a bar chart as inline SVG, built with DOM calls (createElementNS, setAttribute, textContent)
 * and styled by classes from console.css: no chart library, no HTML strings, no inline style (the
 * console's Content-Security-Policy has no 'unsafe-inline'). Every bar carries its bucket's start and count
 * in data-start / data-count and a <title> (a tooltip, and what a screen reader reads), so a test or an
 * operator can read the figures off the page exactly.
 */

const SVG = 'http://www.w3.org/2000/svg';

/** svg makes an SVG element with attributes and text or element children. */
function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

export interface BarChartOptions {
  id: string;
  /** label: what the chart shows, for aria-label ("Enrollments per hour, last 7 days") */
  label: string;
  /** start: the first bucket's start (ms); bucketMs: each bucket's length */
  start: number;
  bucketMs: number;
  counts: number[];
  /** describe: a bar's tooltip, from its bucket's start and count */
  describe: (start: Date, count: number) => string;
  /** tick: an x-axis label under bucket i, or null for none */
  tick: (start: Date, i: number) => string | null;
}

/** Layout in viewBox units; the SVG scales to the width of its container (console.css .chart). */
const W = 720;
const H = 200;
const LEFT = 44;
const RIGHT = 6;
const TOP = 10;
const BOTTOM = 26;

/** niceMax: the y-axis top, a round number at or above the largest count (1 for an empty chart). */
function niceMax(max: number): number {
  if (max <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/** barChart: the chart; a bar of height 0 is still drawn (transparent), so every bucket has its element. */
export function barChart(o: BarChartOptions): SVGSVGElement {
  const n = o.counts.length;
  const top = niceMax(Math.max(0, ...o.counts));
  const plotW = W - LEFT - RIGHT;
  const plotH = H - TOP - BOTTOM;
  const step = plotW / Math.max(1, n);
  const gap = step > 4 ? 1 : 0;
  const total = o.counts.reduce((a, b) => a + b, 0);
  const root = svg('svg', {
    id: o.id,
    class: 'chart',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': `${o.label}: ${total} in all, at most ${Math.max(0, ...o.counts)} in one bar`,
    'data-total': total,
  });
  // y axis: 0, half and the top, with grid lines
  for (const v of [0, top / 2, top]) {
    const y = TOP + plotH - (v / top) * plotH;
    root.append(svg('line', { class: 'grid', x1: LEFT, x2: W - RIGHT, y1: y, y2: y }));
    root.append(svg('text', { class: 'axis', x: LEFT - 4, y: y + 4, 'text-anchor': 'end' }, Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  o.counts.forEach((count, i) => {
    const start = new Date(o.start + i * o.bucketMs);
    const hgt = (count / top) * plotH;
    const x = LEFT + i * step;
    root.append(
      svg(
        'rect',
        {
          class: count > 0 ? 'bar' : 'bar empty',
          x: x + gap / 2,
          y: TOP + plotH - hgt,
          width: Math.max(0.5, step - gap),
          height: hgt,
          'data-start': start.toISOString(),
          'data-count': count,
        },
        svg('title', {}, o.describe(start, count)),
      ),
    );
    const t = o.tick(start, i);
    if (t !== null) {
      root.append(svg('line', { class: 'tick', x1: x, x2: x, y1: TOP + plotH, y2: TOP + plotH + 4 }));
      // a label near the right edge ends at its tick instead of running out of the drawing
      const nearEnd = x + 48 > W - RIGHT;
      root.append(svg('text', { class: 'axis', x: nearEnd ? x - 2 : x + 2, y: H - 8, 'text-anchor': nearEnd ? 'end' : 'start' }, t));
    }
  });
  root.append(svg('line', { class: 'base', x1: LEFT, x2: W - RIGHT, y1: TOP + plotH, y2: TOP + plotH }));
  return root;
}
