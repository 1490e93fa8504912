// A small dependency-free SVG chart writer: line charts (loss curves) and bar charts (accuracy by layer), each a
// valid standalone SVG document (xmlns, viewBox, escaped text) that also embeds inline in HTML.

/**
 * One entry of a training log as lossChart reads it: the optimizer step and, when logged then, `loss` and
 * `eval_loss` (the Trainer's LogEntry has this shape).
 */
export interface StepLogEntry {
  step: number;
  [key: string]: number;
}

/** One line of a line chart. Points with a non-finite coordinate break the line. */
export interface LineSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
  dashed?: boolean;
  /** Circles at the points. Defaults to true when the series has at most 60 points. */
  markers?: boolean;
}

/** A horizontal reference line across the plot (e.g. a majority-class baseline). */
export interface ReferenceLine {
  name: string;
  value: number;
  color?: string;
}

/** Space around a chart's plot area, in pixels. */
export interface Margin {
  top: number;
  right: number;
  bottom: number;
  left: number;
}

interface ChartBase {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Pixels. Defaults to 640 x 400. */
  width?: number;
  height?: number;
  /** Space around the plot area, for the title, legend, ticks and axis labels. Defaults to DEFAULT_MARGIN. */
  margin?: Partial<Margin>;
  /** The y range shown; defaults to the data's range widened to round tick values. */
  yDomain?: readonly [number, number];
  referenceLines?: readonly ReferenceLine[];
}

/** Options of lineChart() (and lossChart()): size, title, axis labels, log scale. */
export interface LineChartOptions extends ChartBase {
  series: readonly LineSeries[];
  /** The x range shown; defaults to the data's range. */
  xDomain?: readonly [number, number];
}

/** Options of barChart(): size, title, axis labels, and a reference line such as the majority-class baseline. */
export interface BarChartOptions extends ChartBase {
  /** One group of bars per category, left to right. */
  categories: readonly string[];
  /** One bar per category for each series (grouped side by side). */
  series: ReadonlyArray<{ name: string; values: readonly number[]; color?: string }>;
  /** Print each bar's value above it (toFixed(valueDigits)). Defaults to true when there are at most 24 bars. */
  valueLabels?: boolean;
  valueDigits?: number;
}

/** Title row, legend row, tick labels and axis labels fit in these by default. */
export const DEFAULT_MARGIN: Readonly<Margin> = { top: 56, right: 24, bottom: 52, left: 64 };

/** Tableau 10. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'] as const;

/** Escapes text for XML/HTML content and attribute values, and drops characters XML 1.0 does not allow. */
export function escapeXml(s: unknown): string {
  return String(s)
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A coordinate as written in the SVG: at most 2 decimals, no "-0". */
export function fmt(x: number): string {
  const r = Math.round(x * 100) / 100;
  return String(r === 0 ? 0 : r);
}

/** Maps [d0, d1] linearly onto [r0, r1]. */
export function linearScale(domain: readonly [number, number], range: readonly [number, number]): (x: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (x) => (d1 === d0 ? (r0 + r1) / 2 : r0 + (x - d0) * k);
}

/** Round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): { ticks: number[]; step: number; lo: number; hi: number } {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { ticks: [0, 1], step: 1, lo: 0, hi: 1 };
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const mult = [1, 2, 5, 10].find((m) => m * pow >= raw) ?? 10;
  const step = mult * pow;
  const start = Math.floor(lo / step + 1e-9) * step;
  const end = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; start + i * step <= end + step * 1e-9; i++) ticks.push(clean(start + i * step, step));
  return { ticks, step, lo: clean(start, step), hi: clean(end, step) };
}

function clean(x: number, step: number): number {
  const d = decimalsOf(step);
  return Number(x.toFixed(Math.min(12, d + 2)));
}

function decimalsOf(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

function tickLabel(x: number, step: number): string {
  if (Math.abs(x) >= 1e6 || (x !== 0 && Math.abs(x) < 1e-4)) return x.toExponential(1);
  return x.toFixed(decimalsOf(step));
}

interface Frame {
  width: number;
  height: number;
  m: Margin;
  /** Plot area. */
  x0: number;
  x1: number;
  y0: number; // bottom
  y1: number; // top
}

function frame(o: ChartBase): Frame {
  const width = o.width ?? 640;
  const height = o.height ?? 400;
  const m = { ...DEFAULT_MARGIN, ...o.margin };
  return { width, height, m, x0: m.left, x1: width - m.right, y0: height - m.bottom, y1: m.top };
}

/** Estimated width of a text at 12 px sans-serif (for laying out the legend). */
function textWidth(s: string, px = 12): number {
  return s.length * px * 0.6;
}

function open(f: Frame, title: string | undefined): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
  ];
  if (title) out.push(`<title>${escapeXml(title)}</title>`);
  out.push(`<rect width="${f.width}" height="${f.height}" fill="#ffffff"/>`);
  if (title) out.push(`<text class="title" x="${fmt(f.width / 2)}" y="20" text-anchor="middle" font-size="15" font-weight="600" fill="#222">${escapeXml(title)}</text>`);
  return out;
}

function yAxis(f: Frame, ticks: number[], step: number, y: (v: number) => number, label?: string): string[] {
  const out = ['<g class="y-axis">'];
  for (const t of ticks) {
    const py = fmt(y(t));
    out.push(`<line x1="${fmt(f.x0)}" y1="${py}" x2="${fmt(f.x1)}" y2="${py}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${fmt(f.x0 - 6)}" y="${py}" dy="0.32em" text-anchor="end" fill="#444">${escapeXml(tickLabel(t, step))}</text>`);
  }
  out.push(`<line x1="${fmt(f.x0)}" y1="${fmt(f.y0)}" x2="${fmt(f.x0)}" y2="${fmt(f.y1)}" stroke="#333"/>`);
  if (label) {
    const cy = fmt((f.y0 + f.y1) / 2);
    out.push(`<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})" fill="#222">${escapeXml(label)}</text>`);
  }
  out.push('</g>');
  return out;
}

function xAxisLine(f: Frame, label?: string): string[] {
  const out = [`<line x1="${fmt(f.x0)}" y1="${fmt(f.y0)}" x2="${fmt(f.x1)}" y2="${fmt(f.y0)}" stroke="#333"/>`];
  if (label) out.push(`<text x="${fmt((f.x0 + f.x1) / 2)}" y="${fmt(f.height - 10)}" text-anchor="middle" fill="#222">${escapeXml(label)}</text>`);
  return out;
}

function referenceLines(f: Frame, lines: readonly ReferenceLine[], y: (v: number) => number): string[] {
  const out: string[] = [];
  for (const r of lines) {
    if (!Number.isFinite(r.value)) continue;
    const py = fmt(y(r.value));
    out.push(`<line class="reference" data-name="${escapeXml(r.name)}" x1="${fmt(f.x0)}" y1="${py}" x2="${fmt(f.x1)}" y2="${py}" stroke="${escapeXml(r.color ?? '#555')}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
  }
  return out;
}

type LegendItem = { name: string; color: string; kind: 'line' | 'dashed' | 'box' };

function legend(f: Frame, items: LegendItem[]): string[] {
  if (items.length === 0) return [];
  const out = ['<g class="legend">'];
  let x = f.x0;
  const y = Math.max(14, f.m.top - 16);
  for (const it of items) {
    const c = escapeXml(it.color);
    if (it.kind === 'box') out.push(`<rect x="${fmt(x)}" y="${fmt(y - 5)}" width="14" height="10" fill="${c}"/>`);
    else out.push(`<line x1="${fmt(x)}" y1="${fmt(y)}" x2="${fmt(x + 18)}" y2="${fmt(y)}" stroke="${c}" stroke-width="2"${it.kind === 'dashed' ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${fmt(x + 22)}" y="${fmt(y)}" dy="0.32em" fill="#222">${escapeXml(it.name)}</text>`);
    x += 22 + textWidth(it.name) + 18;
  }
  out.push('</g>');
  return out;
}

function dataRange(values: Iterable<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

/** A line chart: one polyline (and markers) per series, with axes, grid, ticks, a legend and reference lines. */
export function lineChart(o: LineChartOptions): string {
  const f = frame(o);
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...o.series.flatMap((s) => s.points.map((p) => p[1])), ...(o.referenceLines ?? []).map((r) => r.value)];
  let [xlo, xhi] = o.xDomain ?? dataRange(xs);
  if (xlo === xhi) [xlo, xhi] = [xlo - 1, xhi + 1];
  const yt = o.yDomain ? { ...niceTicks(o.yDomain[0], o.yDomain[1]), lo: o.yDomain[0], hi: o.yDomain[1] } : niceTicks(...dataRange(ys));
  const xt = niceTicks(xlo, xhi, 8);
  const x = linearScale([xlo, xhi], [f.x0, f.x1]);
  const y = linearScale([yt.lo, yt.hi], [f.y0, f.y1]);
  const out = open(f, o.title);
  out.push(...yAxis(f, yt.ticks.filter((t) => t >= yt.lo - 1e-12 && t <= yt.hi + 1e-12), yt.step, y, o.yLabel));
  out.push('<g class="x-axis">');
  for (const t of xt.ticks) {
    if (t < xlo - 1e-12 || t > xhi + 1e-12) continue;
    const px = fmt(x(t));
    out.push(`<line x1="${px}" y1="${fmt(f.y0)}" x2="${px}" y2="${fmt(f.y0 + 5)}" stroke="#333"/>`);
    out.push(`<text x="${px}" y="${fmt(f.y0 + 18)}" text-anchor="middle" fill="#444">${escapeXml(tickLabel(t, xt.step))}</text>`);
  }
  out.push(...xAxisLine(f, o.xLabel), '</g>');
  out.push(...referenceLines(f, o.referenceLines ?? [], y));
  const items: LegendItem[] = [];
  o.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    items.push({ name: s.name, color, kind: s.dashed ? 'dashed' : 'line' });
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    // split at non-finite points
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) out.push(`<polyline fill="none" stroke="${escapeXml(color)}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${run.join(' ')}"/>`);
      run = [];
    };
    const finite = s.points.filter(([px, py]) => Number.isFinite(px) && Number.isFinite(py));
    for (const [px, py] of s.points) {
      if (Number.isFinite(px) && Number.isFinite(py)) run.push(`${fmt(x(px))},${fmt(y(py))}`);
      else flush();
    }
    flush();
    if (s.markers ?? finite.length <= 60) {
      for (const [px, py] of finite) out.push(`<circle cx="${fmt(x(px))}" cy="${fmt(y(py))}" r="3" fill="${escapeXml(color)}"/>`);
    }
    out.push('</g>');
  });
  (o.referenceLines ?? []).forEach((r) => items.push({ name: r.name, color: r.color ?? '#555', kind: 'dashed' }));
  out.push(...legend(f, items), '</svg>');
  return out.join('\n') + '\n';
}

/** A bar chart: grouped bars per category, with axes, grid, value labels, a legend and reference lines. */
export function barChart(o: BarChartOptions): string {
  const f = frame(o);
  const n = o.categories.length;
  for (const s of o.series) {
    if (s.values.length !== n) throw new RangeError(`bar series '${s.name}' has ${s.values.length} values for ${n} categories`);
  }
  const ys = [...o.series.flatMap((s) => s.values), ...(o.referenceLines ?? []).map((r) => r.value), 0];
  const yt = o.yDomain ? { ...niceTicks(o.yDomain[0], o.yDomain[1]), lo: o.yDomain[0], hi: o.yDomain[1] } : niceTicks(...dataRange(ys));
  const y = linearScale([yt.lo, yt.hi], [f.y0, f.y1]);
  const out = open(f, o.title);
  out.push(...yAxis(f, yt.ticks.filter((t) => t >= yt.lo - 1e-12 && t <= yt.hi + 1e-12), yt.step, y, o.yLabel));
  const band = n > 0 ? (f.x1 - f.x0) / n : 0;
  const inner = band * 0.8;
  const barW = o.series.length ? inner / o.series.length : 0;
  out.push('<g class="x-axis">');
  o.categories.forEach((c, i) => {
    out.push(`<text x="${fmt(f.x0 + (i + 0.5) * band)}" y="${fmt(f.y0 + 18)}" text-anchor="middle" fill="#444">${escapeXml(c)}</text>`);
  });
  out.push(...xAxisLine(f, o.xLabel), '</g>');
  const labels = o.valueLabels ?? n * o.series.length <= 24;
  const digits = o.valueDigits ?? 2;
  const base = y(Math.min(Math.max(0, yt.lo), yt.hi));
  const items: LegendItem[] = [];
  o.series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length]!;
    items.push({ name: s.name, color, kind: 'box' });
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      const bx = f.x0 + i * band + (band - inner) / 2 + k * barW;
      const top = y(Math.min(Math.max(v, yt.lo), yt.hi));
      const [ry, rh] = top < base ? [top, base - top] : [base, top - base];
      out.push(`<rect x="${fmt(bx)}" y="${fmt(ry)}" width="${fmt(barW)}" height="${fmt(rh)}" fill="${escapeXml(color)}"><title>${escapeXml(`${o.categories[i]}: ${v}`)}</title></rect>`);
      if (labels) out.push(`<text x="${fmt(bx + barW / 2)}" y="${fmt(ry - 4)}" text-anchor="middle" font-size="10" fill="#333">${escapeXml(v.toFixed(digits))}</text>`);
    });
    out.push('</g>');
  });
  out.push(...referenceLines(f, o.referenceLines ?? [], y));
  (o.referenceLines ?? []).forEach((r) => items.push({ name: r.name, color: r.color ?? '#555', kind: 'dashed' }));
  out.push(...legend(f, items), '</svg>');
  return out.join('\n') + '\n';
}

/**
 * Training and evaluation loss against the optimizer step, from a Trainer's log history (entries with `loss`
 * and entries with `eval_loss`).
 */
export function lossChart(logHistory: readonly StepLogEntry[], options: Partial<LineChartOptions> = {}): string {
  const train = logHistory.filter((e) => typeof e.loss === 'number').map((e) => [e.step, e.loss!] as const);
  const evalPts = logHistory.filter((e) => typeof e.eval_loss === 'number').map((e) => [e.step, e.eval_loss!] as const);
  const maxStep = Math.max(1, ...logHistory.map((e) => e.step).filter(Number.isFinite));
  const series: LineSeries[] = [{ name: 'training loss', points: train, color: PALETTE[0] }];
  if (evalPts.length) series.push({ name: 'eval loss', points: evalPts, color: PALETTE[1] });
  return lineChart({ title: evalPts.length ? 'Training and eval loss' : 'Training loss', xLabel: 'optimizer step', yLabel: 'loss', xDomain: [0, maxStep], ...options, series: options.series ?? series });
}
