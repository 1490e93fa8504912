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
}

export interface Progress {
  update(done: number, total: number, info?: string): void;
  /** Ends the bar (a final line in plain mode). */
  end(info?: string): void;
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
  let lastLine = 0;
  let last: { done: number; total: number; info?: string } | null = null;
  let drawn = false;
  const text = (done: number, total: number, info?: string) => {
    const elapsed = (Date.now() - start) / 1000;
    const eta = done > 0 && total > done ? (elapsed * (total - done)) / done : 0;
    const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
    return { elapsed, eta, pct, tail: info ? ` ${info}` : '' };
  };
  return {
    update(done, total, info) {
      if (o.silent) return;
      last = { done, total, info };
      const { elapsed, eta, pct, tail } = text(done, total, info);
      if (tty) {
        const now = Date.now();
        if (now - lastLine < 100 && done < total) return; // redraw at most 10 times a second
        lastLine = now;
        const width = 24;
        const fill = total > 0 ? Math.min(width, Math.floor((done / total) * width)) : 0;
        const line = `${o.label} [${'='.repeat(fill).padEnd(width)}] ${done}/${total}${unit} ${formatDuration(elapsed)}<${formatDuration(eta)}${tail}`;
        const cols = stream.columns ?? 0;
        stream.write(`\r${cols > 10 ? line.slice(0, cols - 1) : line}\x1b[K`);
        drawn = true;
        return;
      }
      const now = Date.now();
      if (now - lastLine < interval && done < total) return;
      lastLine = now;
      stream.write(`${o.label}: ${done}/${total}${unit} (${pct}%), ${formatDuration(elapsed)} elapsed, ~${formatDuration(eta)} left${tail}\n`);
    },
    end(info) {
      if (o.silent) return;
      const elapsed = formatDuration((Date.now() - start) / 1000);
      if (tty) {
        if (drawn) stream.write('\n');
        return;
      }
      if (last && last.done < last.total) stream.write(`${o.label}: stopped at ${last.done}/${last.total}${unit} after ${elapsed}${info ? ` ${info}` : ''}\n`);
    },
  };
}
