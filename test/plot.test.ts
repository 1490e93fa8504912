// The SVG writer (ts/report/plot.ts) and the HTML report (ts/report/html.ts): coordinates computed by hand from the documented
// layout, escaping, well-formed standalone documents; and the Trainer's loss.svg.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { barChart, DataCollatorWithPadding, Dataset, htmlReport, lineChart, loadHeaded, lossChart, niceTicks, Trainer } from '../ts/index.js';
import { fixture } from './helpers.js';
import { checkXml } from './plot-xml.js';

// A 120 x 120 chart with 10 px margins: the plot area is x 10..110, y 110 (bottom) .. 10 (top).
const box = { width: 120, height: 120, margin: { top: 10, right: 10, bottom: 10, left: 10 } };

function attrsOf(svg: string, tag: string): Array<Record<string, string>> {
  return checkXml(svg).elements.filter((e) => e.name === tag).map((e) => e.attrs);
}

describe('line chart', () => {
  it('puts points where the scales say', () => {
    const svg = lineChart({ ...box, xDomain: [0, 10], yDomain: [0, 1], series: [{ name: 'a', points: [[0, 0], [5, 0.5], [10, 1], [2.5, 0.75]] }] });
    const line = attrsOf(svg, 'polyline');
    expect(line).toHaveLength(1);
    expect(line[0]!.points).toBe('10,110 60,60 110,10 35,35');
    const circles = attrsOf(svg, 'circle').map((c) => [Number(c.cx), Number(c.cy)]);
    expect(circles).toEqual([[10, 110], [60, 60], [110, 10], [35, 35]]);
  });

  it('is a standalone SVG document: xmlns, viewBox, size', () => {
    const svg = lineChart({ width: 300, height: 200, series: [{ name: 'a', points: [[1, 2], [3, 4]] }] });
    const { root } = checkXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(root.attrs.viewBox).toBe('0 0 300 200');
    expect(root.attrs.width).toBe('300');
    expect(svg.startsWith('<svg ')).toBe(true);
  });

  it('escapes every text: title, axis labels, series and reference names', () => {
    const nasty = `a<b & "c" 'd' </svg>`;
    const svg = lineChart({ title: nasty, xLabel: nasty, yLabel: nasty, series: [{ name: nasty, points: [[0, 1], [1, 2]] }], referenceLines: [{ name: nasty, value: 1.5 }] });
    expect(() => checkXml(svg)).not.toThrow();
    expect(svg).not.toContain('a<b');
    expect(svg).toContain('a&lt;b &amp; &quot;c&quot; &#39;d&#39; &lt;/svg&gt;');
    const texts = svg.match(/a&lt;b/g) ?? [];
    expect(texts.length).toBeGreaterThanOrEqual(6); // <title>, title, x label, y label, series legend, reference legend, data-name attributes
  });

  it('breaks the line at missing points and draws reference lines across the plot', () => {
    const svg = lineChart({ ...box, xDomain: [0, 4], yDomain: [0, 4], series: [{ name: 's', points: [[0, 0], [1, 1], [2, Number.NaN], [3, 3], [4, 4]] }], referenceLines: [{ name: 'base', value: 1 }] });
    expect(attrsOf(svg, 'polyline').map((p) => p.points)).toEqual(['10,110 35,85', '85,35 110,10']);
    const ref = attrsOf(svg, 'line').find((l) => l['data-name'] === 'base')!;
    expect([ref.x1, ref.y1, ref.x2, ref.y2].map(Number)).toEqual([10, 85, 110, 85]);
  });

  it('round ticks', () => {
    expect(niceTicks(0, 1).ticks).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.3, 3.7)).toMatchObject({ ticks: [0, 1, 2, 3, 4], step: 1, lo: 0, hi: 4 });
    expect(niceTicks(0, 375, 8).ticks).toEqual([0, 50, 100, 150, 200, 250, 300, 350, 400]);
    expect(niceTicks(2, 2).ticks.length).toBeGreaterThan(1); // a flat series still gets an axis
  });
});

describe('bar chart', () => {
  it('puts bars where the layout says and labels them', () => {
    // 2 categories: bands of 50 px, groups 80% wide (40 px), centred: x = 10 + i*50 + 5
    const svg = barChart({ ...box, categories: ['0', '1'], series: [{ name: 'acc', values: [0.5, 1] }], yDomain: [0, 1], referenceLines: [{ name: 'majority', value: 0.25 }] });
    const bars = attrsOf(svg, 'rect').filter((r) => r.fill !== '#ffffff' && r.height !== '10');
    expect(bars.map((b) => [b.x, b.y, b.width, b.height].map(Number))).toEqual([
      [15, 60, 40, 50],
      [65, 10, 40, 100],
    ]);
    const ref = attrsOf(svg, 'line').find((l) => l['data-name'] === 'majority')!;
    expect(Number(ref.y1)).toBe(85);
    expect(svg).toContain('>0.50</text>');
    expect(svg).toContain('>1.00</text>');
  });

  it('groups several series side by side', () => {
    const svg = barChart({ ...box, categories: ['a'], series: [{ name: 's1', values: [1] }, { name: 's2', values: [0.5] }], yDomain: [0, 1], valueLabels: false });
    const bars = attrsOf(svg, 'rect').filter((r) => r.fill !== '#ffffff' && r.height !== '10');
    // one band of 100 px, group 80 px from x = 20, two bars of 40 px
    expect(bars.map((b) => [b.x, b.width].map(Number))).toEqual([
      [20, 40],
      [60, 40],
    ]);
  });

  it('refuses series that do not match the categories', () => {
    expect(() => barChart({ categories: ['a', 'b'], series: [{ name: 's', values: [1] }] })).toThrow(/1 values for 2 categories/);
  });
});

describe('loss chart and report', () => {
  it('draws training and eval loss from a log history', () => {
    const log = [
      { step: 10, epoch: 0.5, loss: 2, learning_rate: 1e-3 },
      { step: 20, epoch: 1, loss: 1, learning_rate: 1e-3 },
      { step: 20, epoch: 1, eval_loss: 1.5 },
      { step: 20, epoch: 1, train_loss: 1.5, train_runtime: 1 },
    ];
    const svg = lossChart(log);
    const names = checkXml(svg).elements.filter((e) => e.name === 'g' && e.attrs.class === 'series').map((e) => e.attrs['data-name']);
    expect(names).toEqual(['training loss', 'eval loss']);
    expect(attrsOf(svg, 'polyline')).toHaveLength(1); // the eval series has one point: a marker, no line
    expect(attrsOf(svg, 'circle')).toHaveLength(3);
  });

  it('writes an HTML page with the SVG inline and escaped tables', () => {
    const svg = lineChart({ series: [{ name: 'a', points: [[0, 1], [1, 0]] }] });
    const html = htmlReport({ title: 'R & D', facts: { model: '<m>' }, sections: [{ title: 'plot', svg }, { title: 't', table: { columns: ['x'], rows: [['<script>'], [0.123456789]] } }, { title: 'j', json: { a: '<b>' } }] });
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    const { root, elements } = checkXml(html, { html: true });
    expect(root.name).toBe('html');
    expect(elements.some((e) => e.name === 'svg' && e.attrs.xmlns === 'http://www.w3.org/2000/svg')).toBe(true);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;');
    expect(html).toContain('0.1235');
  });

  it('the Trainer writes loss.svg next to log_history.jsonl', async () => {
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true }] });
    const out = mkdtempSync(join(tmpdir(), 'th-plot-'));
    const rows = Array.from({ length: 16 }, (_, i) => ({ input_ids: [i + 1, i + 2, i + 3], attention_mask: [1, 1, 1], cls: i % 2 }));
    const trainer = new Trainer(model, { outputDir: out, numTrainEpochs: 2, perDeviceTrainBatchSize: 4, loggingSteps: 2, learningRate: 1e-2 }, {
      trainDataset: new Dataset(rows),
      evalDataset: new Dataset(rows.slice(0, 8)),
      dataCollator: new DataCollatorWithPadding({ input_ids: 100, attention_mask: 0 }),
    });
    await trainer.train();
    model.dispose();
    const svg = readFileSync(join(out, 'loss.svg'), 'utf8');
    expect(checkXml(svg).root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    const pts = attrsOf(svg, 'polyline')[0]!.points!.split(' ');
    expect(pts).toHaveLength(4); // 8 steps logged every 2
  });
});
