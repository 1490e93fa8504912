// A standalone HTML report page: SVG charts inline, tables of results, the raw JSON. No scripts, no external files.

import { escapeXml } from './plot.js';

/** A table cell: text, a number (formatted), a boolean, or empty (null / undefined). */
export type Cell = string | number | boolean | null | undefined;

/** A table of an HTML report: column names and rows of cells. */
export interface Table {
  columns: readonly string[];
  rows: ReadonlyArray<readonly Cell[]>;
}

/** One section of an HTML report: a heading with an SVG chart, a table and/or paragraphs. */
export interface ReportSection {
  title: string;
  /** A paragraph of plain text (escaped). */
  text?: string;
  /** An SVG document, embedded inline. */
  svg?: string;
  table?: Table;
  /** Any JSON value, shown pretty-printed. */
  json?: unknown;
}

/** What htmlReport() puts on its one standalone page. */
export interface ReportOptions {
  title: string;
  /** Plain-text line under the title. */
  subtitle?: string;
  /** Key / value facts shown as a small table at the top (model, dataset, timings). */
  facts?: Record<string, Cell>;
  sections: readonly ReportSection[];
}

function cell(v: Cell): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  }
  return String(v);
}

/** An HTML table; numeric cells are right-aligned. */
export function htmlTable(t: Table): string {
  const head = t.columns.map((c) => `<th>${escapeXml(c)}</th>`).join('');
  const body = t.rows
    .map((r) => `<tr>${r.map((v) => `<td${typeof v === 'number' ? ' class="num"' : ''}>${escapeXml(cell(v))}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/** Strips an XML declaration or doctype so an SVG document can sit inside HTML. */
function inlineSvg(svg: string): string {
  return svg.replace(/^\s*<\?xml[^>]*\?>\s*/, '').replace(/^\s*<!DOCTYPE[^>]*>\s*/i, '').trim();
}

const STYLE = `body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.subtitle{color:#555;margin-top:0}table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.5rem 0}svg{max-width:100%;height:auto}pre{background:#f7f7f7;padding:.75rem;overflow:auto;font-size:.8rem}
footer{margin-top:2rem;color:#888;font-size:.8rem}`;

/** The report page as a string (UTF-8 HTML5). */
export function htmlReport(o: ReportOptions): string {
  const parts = [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeXml(o.title)}</title>`,
    `<style>\n${STYLE}\n</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeXml(o.title)}</h1>`,
  ];
  if (o.subtitle) parts.push(`<p class="subtitle">${escapeXml(o.subtitle)}</p>`);
  if (o.facts && Object.keys(o.facts).length) {
    parts.push(htmlTable({ columns: ['', ''], rows: Object.entries(o.facts).map(([k, v]) => [k, v]) }).replace('<thead><tr><th></th><th></th></tr></thead>\n', ''));
  }
  for (const s of o.sections) {
    parts.push('<section>', `<h2>${escapeXml(s.title)}</h2>`);
    if (s.text) parts.push(`<p>${escapeXml(s.text)}</p>`);
    if (s.svg) parts.push(`<figure>\n${inlineSvg(s.svg)}\n</figure>`);
    if (s.table) parts.push(htmlTable(s.table));
    if (s.json !== undefined) parts.push(`<pre>${escapeXml(JSON.stringify(s.json, null, 2))}</pre>`);
    parts.push('</section>');
  }
  parts.push(`<footer>written by transformer-heads on ${escapeXml(new Date().toISOString())}</footer>`, '</body>', '</html>');
  return parts.join('\n') + '\n';
}
