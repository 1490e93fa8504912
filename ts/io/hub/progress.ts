// Download progress: the events passed to onProgress, and their bookkeeping over the files of one call.

/** A download's state, passed to onProgress. */
export interface DownloadProgress {
  /** 'start': the files to fetch are known; 'progress': bytes arrived; 'file': a file is complete and verified; 'done': all are. */
  event: 'start' | 'progress' | 'file' | 'done';
  repoId: string;
  revision: string;
  commit: string;
  /** The file the event is about (null for 'start' and 'done'). */
  file: string | null;
  /** Bytes of the files being fetched that are on disk, resumed ones included. */
  bytes: number;
  totalBytes: number;
  filesDone: number;
  filesTotal: number;
  /** Over the last few seconds. */
  bytesPerSecond: number;
  /** null until a rate is known. */
  etaSeconds: number | null;
}

/** Progress over the files of one call: totals, a rate over the last seconds, throttled events. */
export class Tally {
  #files = new Map<string, { size: number; bytes: number; done: boolean }>();
  #uncounted = new Map<string, number>();
  /** Bytes that came over the network in this call (resumed ones excluded, re-sent ones counted again). */
  #received = 0;
  #samples: Array<[number, number]> = [];
  #lastEmit = 0;
  #started = false;
  constructor(
    private readonly s: { repoId: string; revision: string; options: { onProgress?: (p: DownloadProgress) => void } },
    private readonly commit: string,
  ) {}

  plan(file: string, size: number): void {
    this.#files.set(file, { size, bytes: 0, done: false });
  }
  resumed(file: string, bytes: number): void {
    const f = this.#files.get(file);
    if (f) f.bytes = bytes;
  }
  bytes(file: string, abs: number): void {
    const f = this.#files.get(file);
    if (!f) {
      // a small file fetched outside the count (a shard index): its bytes still arrived
      const before = this.#uncounted.get(file) ?? 0;
      if (abs > before) this.#received += abs - before;
      this.#uncounted.set(file, abs);
      return;
    }
    if (abs > f.bytes) this.#received += abs - f.bytes;
    f.bytes = abs;
    this.emit('progress', file);
  }
  done(file: string): void {
    const f = this.#files.get(file);
    if (!f) return;
    f.bytes = f.size;
    f.done = true;
    this.emit('file', file);
  }
  start(): void {
    if (this.#started || this.#files.size === 0) return;
    this.#started = true;
    this.emit('start', null);
  }
  finish(): void {
    if (this.#started) this.emit('done', null);
  }
  get received(): number {
    return this.#received;
  }

  emit(event: DownloadProgress['event'], file: string | null): void {
    const cb = this.s.options.onProgress;
    if (!cb) return;
    const now = Date.now();
    if (event === 'progress' && now - this.#lastEmit < 100) return;
    this.#lastEmit = now;
    this.#samples.push([now, this.#received]);
    while (this.#samples.length > 2 && now - this.#samples[0]![0] > 5000) this.#samples.shift();
    const [t0, r0] = this.#samples[0]!;
    const rate = now > t0 ? ((this.#received - r0) * 1000) / (now - t0) : 0;
    let bytes = 0;
    let total = 0;
    let filesDone = 0;
    for (const f of this.#files.values()) {
      bytes += f.bytes;
      total += f.size;
      if (f.done) filesDone++;
    }
    cb({
      event,
      repoId: this.s.repoId,
      revision: this.s.revision,
      commit: this.commit,
      file,
      bytes,
      totalBytes: total,
      filesDone,
      filesTotal: this.#files.size,
      bytesPerSecond: rate,
      etaSeconds: rate > 0 ? (total - bytes) / rate : event === 'done' ? 0 : null,
    });
  }
}
