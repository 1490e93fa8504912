// Progress on stderr: a redrawn bar with ETA in a terminal, plain periodic log lines otherwise (CI logs, pipes).

export interface ProgressOptions {
  /** Shown before the counts, e.g. 'train'. */
  label: string;
  /** Unit of the counts, e.g. 'steps'. */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Redraw a bar (default: when the stream is a terminal) or print a line every `intervalMs`. */
  tty?: boolean;
  /** Minimum time between plain log lines. Defaults to 5000 ms. */
  intervalMs?: number;
  /** Print nothing. */
  silent?: boolean;
  /** Shows the counts (e.g. as bytes). Defaults to the plain number. */
  format?: (n: number) => string;
}

export interface Progress {
  /** `etaSeconds` replaces the estimate from the average rate since the start (e.g. for a resumed download). */
  update(done: number, total: number, info?: string, etaSeconds?: number | null): void;
  /** Ends the bar (a final line in plain mode). */
  end(info?: string): void;
}

/** Bytes in decimal units, as download tools show them: 912 B, 12.3 kB, 4.56 MB, 13.5 GB. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function progress(o: ProgressOptions): Progress {
  const stream = o.stream ?? process.stderr;
  const tty = o.tty ?? Boolean(stream.isTTY);
  const interval = o.intervalMs ?? 5000;
  const unit = o.unit ? ` ${o.unit}` : '';
  const start = Date.now();
  const fmt = o.format ?? String;
  let lastLine = 0;
  let last: { done: number; total: number; info?: string } | null = null;
  let drawn = false;
  const text = (done: number, total: number, info?: string, etaSeconds?: number | null) => {
    const elapsed = (Date.now() - start) / 1000;
    const eta = etaSeconds !== undefined ? (etaSeconds ?? NaN) : done > 0 && total > done ? (elapsed * (total - done)) / done : 0;
    const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
    return { elapsed, eta, pct, tail: info ? ` ${info}` : '' };
  };
  return {
    update(done, total, info, etaSeconds) {
      if (o.silent) return;
      last = { done, total, info };
      const { elapsed, eta, pct, tail } = text(done, total, info, etaSeconds);
      if (tty) {
        const now = Date.now();
        if (now - lastLine < 100 && done < total) return; // redraw at most 10 times a second
        lastLine = now;
        const width = 24;
        const fill = total > 0 ? Math.min(width, Math.floor((done / total) * width)) : 0;
        const line = `${o.label} [${'='.repeat(fill).padEnd(width)}] ${fmt(done)}/${fmt(total)}${unit} ${formatDuration(elapsed)}<${formatDuration(eta)}${tail}`;
        const cols = stream.columns ?? 0;
        stream.write(`\r${cols > 10 ? line.slice(0, cols - 1) : line}\x1b[K`);
        drawn = true;
        return;
      }
      const now = Date.now();
      if (now - lastLine < interval && done < total) return;
      lastLine = now;
      stream.write(`${o.label}: ${fmt(done)}/${fmt(total)}${unit} (${pct}%), ${formatDuration(elapsed)} elapsed, ~${formatDuration(eta)} left${tail}\n`);
    },
    end(info) {
      if (o.silent) return;
      const elapsed = formatDuration((Date.now() - start) / 1000);
      if (tty) {
        if (drawn) stream.write('\n');
        return;
      }
      if (last && last.done < last.total) stream.write(`${o.label}: stopped at ${fmt(last.done)}/${fmt(last.total)}${unit} after ${elapsed}${info ? ` ${info}` : ''}\n`);
    },
  };
}
