// The presentation layer: standalone SVG charts, HTML report pages and progress lines. Pure writers over plain
// inputs (numbers, strings, their own option types): nothing here knows about models or training.
export { formatBytes, formatDuration, progress } from './progress.js';
export type { Progress, ProgressOptions } from './progress.js';
export { htmlReport, htmlTable } from './html.js';
export type { Cell, ReportOptions, ReportSection, Table } from './html.js';
export { barChart, DEFAULT_MARGIN, escapeXml, fmt, lineChart, linearScale, lossChart, niceTicks, PALETTE } from './plot.js';
export type { BarChartOptions, LineChartOptions, LineSeries, Margin, ReferenceLine, StepLogEntry } from './plot.js';
