// An exclusive lock file between processes (and within one), at huggingface_hub's lock path
// (.locks/models--org--name/<etag>.lock), guarding one blob's download and its .incomplete file.
//
// Node has no flock(2), so the lock is the file's existence: it is published with link(2), which fails if the file
// exists, holding {pid, host, nonce} so that it is never seen half-written. A holder refreshes its mtime every few
// seconds. A lock is stale, and taken over, when its process is gone (same host), when its mtime stopped moving for
// STALE_MS (a crashed or frozen holder, or one on another host sharing the cache), or when it is not one of ours:
// Python's filelock leaves its (empty) lock files behind after every download, and holds them with flock, which
// this file cannot see; huggingface_hub itself downloads to a private temporary file, so sharing the path with it is
// harmless. A takeover renames the stale file aside and checks it renamed the one it judged, so that two waiters
// cannot both take one lock.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, mkdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

import { abortedError } from './http.js';

const HEARTBEAT_MS = 5_000;
const STALE_MS = 60_000;
const POLL_MS = 100;

interface LockInfo {
  pid: number;
  host: string;
  nonce: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function judge(path: string): Promise<{ stale: boolean; ino: number } | null> {
  let st;
  let text;
  try {
    st = await stat(path);
    text = await readFile(path, 'utf8');
  } catch {
    return null; // released meanwhile: try again
  }
  let info: LockInfo | null = null;
  try {
    const o = JSON.parse(text) as Partial<LockInfo>;
    if (typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.nonce === 'string') info = o as LockInfo;
  } catch {
    /* not ours */
  }
  if (!info) return { stale: true, ino: st.ino };
  if (info.host === hostname() && !alive(info.pid)) return { stale: true, ino: st.ino };
  return { stale: Date.now() - st.mtimeMs > STALE_MS, ino: st.ino };
}

export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Takes the lock at `path`, waiting (polling) while another live holder has it. `onWait` is called once when the
 * lock is busy.
 */
export async function acquireLock(path: string, o: { signal?: AbortSignal; onWait?: () => void } = {}): Promise<HeldLock> {
  await mkdir(dirname(path), { recursive: true });
  const info: LockInfo = { pid: process.pid, host: hostname(), nonce: randomBytes(8).toString('hex') };
  const tmp = `${path}.${info.nonce}.tmp`;
  let waited = false;
  for (;;) {
    if (o.signal?.aborted) throw abortedError(o.signal, 'waiting for the download lock');
    await writeFile(tmp, JSON.stringify(info), { mode: 0o664 });
    try {
      await link(tmp, path);
      await unlink(tmp);
      break;
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const j = await judge(path);
    if (j?.stale) {
      const aside = `${path}.${info.nonce}.stale`;
      try {
        await rename(path, aside);
        const st = await stat(aside);
        if (st.ino === j.ino) await unlink(aside);
        // Not the file judged: a fresh lock taken meanwhile. Put it back unless yet another one is there now.
        else await link(aside, path).catch(() => undefined).finally(() => unlink(aside).catch(() => undefined));
      } catch {
        /* someone else moved it first */
      }
      continue;
    }
    if (j && !waited) {
      waited = true;
      o.onWait?.();
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const beat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  return {
    async release() {
      clearInterval(beat);
      try {
        const o2 = JSON.parse(await readFile(path, 'utf8')) as Partial<LockInfo>;
        if (o2.nonce === info.nonce) await unlink(path);
      } catch {
        /* already gone */
      }
    },
  };
}
