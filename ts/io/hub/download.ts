// Downloading one blob into the cache: under the blob's lock, into a file of its own next to the blob, resumed with
// an HTTP Range request after an interruption (a dropped connection is retried at once; an abort leaves the partial
// file as blobs/<etag>.incomplete for the next call; a crash leaves it under its own name, adopted a minute later),
// checked against the size and the checksum the etag names (sha256 for LFS files, the git blob sha1 for the others)
// and only then renamed to blobs/<etag>. A file that fails the check is deleted: nothing partial or unverified ever
// becomes a blob.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, stat, truncate } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { TransformerHeadsError } from '../../errors.js';
import { type RepoCache, removeFile, sizeOf } from './cache.js';
import { abortedError, drain, hubError, networkError, request, retryable, type FileMetadata, type HubTarget } from './http.js';
import { acquireLock } from './lock.js';

/** How an etag checks a file's bytes. */
type Check = { kind: 'sha256' | 'git-sha1' | 'size-only' };

function checkOf(etag: string): Check {
  if (/^[0-9a-f]{64}$/.test(etag)) return { kind: 'sha256' };
  if (/^[0-9a-f]{40}$/.test(etag)) return { kind: 'git-sha1' };
  return { kind: 'size-only' };
}

function newHash(check: Check, size: number): Hash | null {
  if (check.kind === 'sha256') return createHash('sha256');
  if (check.kind === 'git-sha1') return createHash('sha1').update(`blob ${size}\0`);
  return null;
}

export interface BlobDownload {
  cache: RepoCache;
  meta: FileMetadata;
  file: string;
  target: HubTarget;
  /** Authorization header for the Hub's own host (dropped when the bytes come from another host, a CDN). */
  auth: Record<string, string>;
  signal?: AbortSignal;
  timeoutMs: number;
  /** Bytes of this file on disk or arriving: rises as bytes arrive, falls back when a restart drops some. */
  onFileBytes(bytes: number): void;
  /** Bytes already on disk from an earlier interrupted download, before any request. */
  onResume?(bytes: number): void;
  onWait?(): void;
  /** Delay before retrying a dropped connection; tests shorten it. */
  retryDelayMs?: number;
}

// Two calls in one process for one blob share one download (the lock file would make the second poll).
const inFlight = new Map<string, Promise<void>>();

/** Makes blobs/<etag> exist and hold the verified bytes of `meta`. */
export function ensureBlob(d: BlobDownload): Promise<void> {
  const blob = d.cache.blob(d.meta.etag);
  const running = inFlight.get(blob);
  if (running) return running;
  const p = downloadLocked(d).finally(() => inFlight.delete(blob));
  inFlight.set(blob, p);
  return p;
}

async function downloadLocked(d: BlobDownload): Promise<void> {
  const blob = d.cache.blob(d.meta.etag);
  if ((await sizeOf(blob)) === d.meta.size) return;
  try {
    await mkdir(dirname(blob), { recursive: true });
  } catch (e) {
    throw cacheWriteError(e, d);
  }
  const lock = await acquireLock(d.cache.lock(d.meta.etag), { signal: d.signal, onWait: d.onWait }).catch((e: unknown) => {
    throw e instanceof TransformerHeadsError ? e : cacheWriteError(e, d);
  });
  try {
    const have = await sizeOf(blob);
    if (have === d.meta.size) return; // another process finished it while we waited
    if (have >= 0) await removeFile(blob); // a blob of the wrong size: not to be trusted
    // The bytes go to a file only this download writes (as huggingface_hub does), so that what is hashed is what is
    // on disk even if the lock were ever held twice; the shared <etag>.incomplete name is where a partial file
    // waits between two calls, to be resumed.
    const mine = `${blob}.${randomBytes(4).toString('hex')}.incomplete`;
    await claimPartial(blob, mine);
    try {
      await downloadToIncomplete(d, mine);
      await rename(mine, blob);
    } catch (e) {
      if ((await sizeOf(mine)) > 0) await rename(mine, `${blob}.incomplete`).catch(() => removeFile(mine));
      else await removeFile(mine);
      throw e;
    }
  } finally {
    await lock.release();
  }
}

/** A partial file left by a crashed download stays this long untouched before another one adopts it. */
const ORPHAN_QUIET_MS = 60_000;

/**
 * Takes over the partial file to resume, if any: <etag>.incomplete (left by an interrupted call), else the largest
 * <etag>.<id>.incomplete that a crashed download (this library's, or huggingface_hub's) left and nothing has written
 * to for a minute.
 */
async function claimPartial(blob: string, mine: string): Promise<void> {
  try {
    await rename(`${blob}.incomplete`, mine);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const dir = dirname(blob);
  const prefix = `${basename(blob)}.`;
  let best: { path: string; size: number } | null = null;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !name.endsWith('.incomplete')) continue;
    const p = join(dir, name);
    const st = await stat(p).catch(() => null);
    if (!st || Date.now() - st.mtimeMs < ORPHAN_QUIET_MS) continue;
    if (!best || st.size > best.size) best = { path: p, size: st.size };
  }
  if (best) await rename(best.path, mine).catch(() => undefined);
}

async function hashPrefix(path: string, hash: Hash | null, bytes: number): Promise<void> {
  if (!hash || bytes === 0) return;
  await pipeline(createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: 1 << 20 }), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) hash.update(c);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function downloadToIncomplete(d: BlobDownload, incomplete: string): Promise<void> {
  const { meta } = d;
  const check = checkOf(meta.etag);
  const what = `downloading '${d.file}' of '${d.target.repoId}'`;
  const delay = () => sleep(d.retryDelayMs ?? 1000);
  // As huggingface_hub's http_get: up to 5 retries in a row, the count starting afresh whenever bytes arrive.
  let retries = 5;
  let first = true;
  for (;;) {
    if (d.signal?.aborted) throw abortedError(d.signal, what);
    let pos = Math.max(await sizeOf(incomplete), 0);
    if (pos > meta.size) {
      await truncate(incomplete, 0);
      pos = 0;
    }
    if (first && pos > 0) d.onResume?.(pos);
    first = false;
    d.onFileBytes(pos);
    let hash = newHash(check, meta.size);
    await hashPrefix(incomplete, hash, pos);
    if (pos === meta.size) return verify(d, incomplete, hash, pos);
    let res: IncomingMessage;
    try {
      res = await get(d, pos);
    } catch (e) {
      if (e instanceof TransformerHeadsError || d.signal?.aborted || retries-- <= 0) throw streamError(e, d, what);
      await delay();
      continue;
    }
    const status = res.statusCode ?? 0;
    if (status === 200 && pos > 0) {
      // the server ignored the Range header: start over rather than append a second copy
      pos = 0;
      d.onFileBytes(0);
      hash = newHash(check, meta.size);
    } else if (status === 206) {
      const start = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1];
      if (start === undefined || Number(start) !== pos) {
        drain(res);
        throw new TransformerHeadsError(`${what}: the server answered the range request from byte ${start ?? '?'} instead of ${pos}`, 'ERR_TH_NETWORK');
      }
    } else if (status === 416 && pos > 0) {
      // the server's file is not the one the partial file was a part of: start over
      drain(res);
      await truncate(incomplete, 0);
      if (retries-- <= 0) throw new TransformerHeadsError(`${what}: the server refuses every range request`, 'ERR_TH_NETWORK');
      continue;
    } else if (status !== 200) {
      const err = hubError(res, { ...d.target, file: d.file });
      drain(res);
      if (!retryable(status) || retries-- <= 0) throw err;
      await delay();
      continue;
    }
    let received = 0;
    try {
      const base = pos;
      await stream(res, incomplete, pos > 0, hash, (n) => d.onFileBytes(base + (received += n)), d.signal);
    } catch (e) {
      if (isLocalFileError(e)) throw cacheWriteError(e, d);
      if ((await sizeOf(incomplete)) > pos) retries = 5;
      if (e instanceof TransformerHeadsError || d.signal?.aborted || retries-- <= 0) throw streamError(e, d, what);
      await delay();
      continue;
    }
    const got = await sizeOf(incomplete);
    if (got < meta.size) {
      // the connection closed cleanly but early: resume as after a reset
      if (got > pos) retries = 5;
      if (retries-- <= 0) throw new TransformerHeadsError(`${what}: the server sent ${got} of ${meta.size} bytes and stopped\nretry: the download resumes where it stopped`, 'ERR_TH_NETWORK');
      continue;
    }
    return verify(d, incomplete, hash, got);
  }
}

/** A failure of the disk, not of the network: no retry helps. */
function isLocalFileError(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  return typeof err?.syscall === 'string' && ['open', 'write', 'close', 'fsync', 'rename', 'ftruncate'].includes(err.syscall);
}

function cacheWriteError(e: unknown, d: BlobDownload): TransformerHeadsError {
  const err = e as NodeJS.ErrnoException;
  const hint = err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'free some disk space, or point HF_HUB_CACHE at a larger disk' : 'check that the cache folder is writable, or point HF_HUB_CACHE (or the cacheDir option) at one that is';
  return new TransformerHeadsError(`could not write '${d.file}' into the cache ${d.cache.cacheDir}: ${err.message}\n${hint}`, 'ERR_TH_FILE', { cause: e });
}

function streamError(e: unknown, d: BlobDownload, what: string): Error {
  if (d.signal?.aborted) return abortedError(d.signal, what);
  if (e instanceof TransformerHeadsError) return e;
  return networkError(e, d.target, what);
}

/** GET of the bytes from `from` on, following redirects; the token goes to the Hub's host only. */
async function get(d: BlobDownload, from: number): Promise<IncomingMessage> {
  let url = d.meta.location;
  const hubHost = new URL(d.target.endpoint).host;
  for (let hops = 0; hops < 10; hops++) {
    const sameHost = new URL(url).host === hubHost;
    const res = await request('GET', url, {
      headers: { ...(sameHost ? d.auth : {}), ...(from > 0 ? { range: `bytes=${from}-` } : {}) },
      ...(d.signal ? { signal: d.signal } : {}),
      timeoutMs: d.timeoutMs,
    });
    const status = res.statusCode ?? 0;
    const loc = res.headers.location;
    if (status >= 300 && status < 400 && loc) {
      drain(res);
      url = new URL(loc, url).toString();
      continue;
    }
    return res;
  }
  throw new TransformerHeadsError(`downloading '${d.file}': more than 10 redirects`, 'ERR_TH_NETWORK');
}

/** Streams a response body into the incomplete file, hashing and counting it. */
async function stream(res: IncomingMessage, path: string, append: boolean, hash: Hash | null, count: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash?.update(chunk);
      count(chunk.length);
      cb(null, chunk);
    },
  });
  await pipeline(res, counter, createWriteStream(path, { flags: append ? 'a' : 'w', highWaterMark: 1 << 20 }), ...(signal ? [{ signal }] : []));
}

async function verify(d: BlobDownload, path: string, hash: Hash | null, size: number): Promise<void> {
  const { meta } = d;
  const fail = async (what: string) => {
    await removeFile(path);
    return new TransformerHeadsError(
      `'${d.file}' of '${d.target.repoId}' ${what}; the download was discarded and nothing was written to the cache\nretry; if it fails again, the server or a proxy in between is altering the file`,
      'ERR_TH_NETWORK',
    );
  };
  if (size !== meta.size) throw await fail(`arrived with ${size} bytes where the Hub announced ${meta.size}`);
  if (hash) {
    const got = hash.digest('hex');
    if (got !== meta.etag) throw await fail(`does not match its ${checkOf(meta.etag).kind === 'sha256' ? 'sha256' : 'git sha1'} checksum (expected ${meta.etag}, got ${got})`);
  }
}
