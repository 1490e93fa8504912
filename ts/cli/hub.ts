// Hub models on the command line: --model and run folders may be "org/name[@revision]"; such a model is fetched
// into the cache up front, with a progress bar (bytes, rate, ETA) on stderr, so that everything after (config,
// tokenizer, weights) reads the cache without a request.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { parseRepoRef, resolveModel, type DownloadProgress, type HubFiles } from '../io/index.js';
import { formatBytes, formatDuration, type Progress } from '../report/index.js';
import { usageError, type Values } from './args.js';
import type { Ui } from './ui.js';

/** A model argument as the library takes it: an existing path made absolute, else a Hub id kept as given. */
export function modelArg(arg: string, v?: Values, flag = '--model'): string {
  const rev = v && typeof v.revision === 'string' ? v.revision : undefined;
  if (existsSync(arg)) {
    if (rev) usageError(`--revision applies to Hub models; '${arg}' is a local path`);
    return resolve(arg);
  }
  const ref = parseRepoRef(arg);
  if (!ref) return resolve(arg);
  if (rev && ref.revision && rev !== ref.revision) usageError(`${flag}: two revisions, '@${ref.revision}' and --revision ${rev}`);
  return rev && !ref.revision ? `${arg}@${rev}` : arg;
}

/** Whether a model argument names a Hub model (not a path on disk). */
export function isHubModel(arg: string): boolean {
  return !existsSync(arg) && parseRepoRef(arg) !== null;
}

/** An onProgress callback drawing the download on stderr (and, with `json`, one JSON line per second and per file). */
export function hubProgress(ui: Ui, json = false): (p: DownloadProgress) => void {
  let bar: Progress | null = null;
  let lastJson = 0;
  let shown = 0;
  return (p) => {
    if (json && ui.json && (p.event !== 'progress' || Date.now() - lastJson >= 1000)) {
      lastJson = Date.now();
      ui.emit({ event: p.event, repoId: p.repoId, commit: p.commit, file: p.file, bytes: p.bytes, totalBytes: p.totalBytes, filesDone: p.filesDone, filesTotal: p.filesTotal, bytesPerSecond: Math.round(p.bytesPerSecond), etaSeconds: p.etaSeconds === null ? null : Number(p.etaSeconds.toFixed(1)) });
    }
    if (p.event === 'start') {
      ui.log(`downloading ${p.repoId} (commit ${p.commit.slice(0, 12)}): ${p.filesTotal} file${p.filesTotal > 1 ? 's' : ''}, ${formatBytes(p.totalBytes)}${p.bytes ? `, ${formatBytes(p.bytes)} already there` : ''}`);
      bar = ui.progress('download', '', formatBytes);
    }
    if (p.event === 'progress') {
      bar?.update(p.bytes, p.totalBytes, `${formatBytes(p.bytesPerSecond)}/s${p.file ? ` ${p.file}` : ''}`, p.etaSeconds);
      shown = p.bytes;
    }
    if (p.event === 'done') {
      if (shown < p.totalBytes) bar?.update(p.bytes, p.totalBytes, `${formatBytes(p.bytesPerSecond)}/s`, 0);
      bar?.end();
      bar = null;
    }
  };
}

/** Fetches a Hub model (no-op for a local path) with progress on stderr; returns the argument unchanged. */
export async function fetchModel(arg: string, ui: Ui, files: HubFiles = 'model', signal?: AbortSignal): Promise<string> {
  if (!isHubModel(arg)) return arg;
  const t0 = Date.now();
  let fetched = false;
  const onProgress = hubProgress(ui);
  await resolveModel(arg, {
    files,
    ...(signal ? { signal } : {}),
    onProgress: (p) => {
      fetched = true;
      onProgress(p);
    },
  });
  if (fetched) ui.log(`${arg}: in the cache after ${formatDuration((Date.now() - t0) / 1000)}`);
  return arg;
}
