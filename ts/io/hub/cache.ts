// The on-disk layout of the Hugging Face cache, as huggingface_hub writes and reads it (file_download.py), so that
// Python and this library share one cache:
//
//   <cache>/models--org--name/blobs/<etag>                 file contents, named by their etag (sha256 or git sha1)
//   <cache>/models--org--name/snapshots/<commit>/<file>    relative symlinks ../../blobs/<etag>
//   <cache>/models--org--name/refs/<revision>              the commit of a branch or tag (no trailing newline)
//   <cache>/models--org--name/.no_exist/<commit>/<file>    empty: the file is known not to exist at that commit
//   <cache>/.locks/models--org--name/<etag>.lock           held while a blob is downloaded
//   <cache>/CACHEDIR.TAG                                   tells backup tools to skip the cache
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';

import { TransformerHeadsError } from '../../errors.js';
import { COMMIT_RE } from './repo.js';

const CACHEDIR_TAG =
  'Signature: 8a477f597d28d172789f06886806bc55\n' +
  '# This file is a cache directory tag created by huggingface_hub.\n' +
  '# For information about cache directory tags, see:\n' +
  '#\thttps://bford.info/cachedir/\n';

/** huggingface_hub's repo_folder_name: models--org--name. */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

/** A file name inside a repository: relative, '/'-separated, with no '.' or '..' part. */
export function checkRepoFile(file: string): string {
  if (!file || file.startsWith('/') || file.includes('\\') || file.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new TransformerHeadsError(`'${file}' is not a valid file name inside a repository`, 'ERR_TH_FILE');
  }
  return file;
}

/** One repository's folder in the cache. */
export class RepoCache {
  readonly cacheDir: string;
  readonly repoId: string;
  /** <cache>/models--org--name */
  readonly folder: string;

  constructor(cacheDir: string, repoId: string) {
    this.cacheDir = resolve(cacheDir);
    this.repoId = repoId;
    this.folder = join(this.cacheDir, repoFolderName(repoId));
  }

  blob(etag: string): string {
    if (!/^[\w.-]+$/.test(etag) || etag.startsWith('.')) throw new TransformerHeadsError(`the Hub sent an unusable ETag '${etag}'`, 'ERR_TH_NETWORK');
    return join(this.folder, 'blobs', etag);
  }

  lock(etag: string): string {
    return join(this.cacheDir, '.locks', repoFolderName(this.repoId), `${etag}.lock`);
  }

  snapshot(commit: string): string {
    return join(this.folder, 'snapshots', commit);
  }

  /** snapshots/<commit>/<file>, refusing names that would leave the snapshot (as _get_pointer_path does). */
  pointer(commit: string, file: string): string {
    const snap = this.snapshot(commit);
    const p = join(snap, ...checkRepoFile(file).split('/'));
    if (!p.startsWith(snap + sep)) throw new TransformerHeadsError(`'${file}' is not a valid file name inside a repository`, 'ERR_TH_FILE');
    return p;
  }

  /** The commit a revision names in this cache: the revision itself when it is a commit hash, else refs/<revision>. */
  commitOf(revision: string): string | null {
    if (COMMIT_RE.test(revision)) return revision;
    try {
      const c = readFileSync(join(this.folder, 'refs', ...revision.split('/')), 'utf8').trim();
      return COMMIT_RE.test(c) ? c : null;
    } catch {
      return null;
    }
  }

  /** Records the commit of a branch or tag, atomically, only when it changed (the cache may be read-only). */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = join(this.folder, 'refs', ...revision.split('/'));
    try {
      if ((await readFile(path, 'utf8')) === commit) return;
    } catch {
      /* absent */
    }
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, commit); // no newline: Python reads the file as is
    await rename(tmp, path);
  }

  /** 'present' (a readable file, its blob there), 'absent' (recorded in .no_exist), or 'unknown'. */
  state(commit: string, file: string): 'present' | 'absent' | 'unknown' {
    try {
      if (statSync(this.pointer(commit, file)).isFile()) return 'present';
    } catch {
      /* missing, or a link whose blob is gone */
    }
    return existsSync(join(this.folder, '.no_exist', commit, ...file.split('/'))) ? 'absent' : 'unknown';
  }

  /** Remembers that a file does not exist at a commit, so that the next load asks no one. */
  async markAbsent(commit: string, file: string): Promise<void> {
    const p = join(this.folder, '.no_exist', commit, ...checkRepoFile(file).split('/'));
    try {
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, '', { flag: 'a' });
    } catch {
      /* a read-only cache: huggingface_hub ignores this too */
    }
  }

  /**
   * Points snapshots/<commit>/<file> at blobs/<etag> with a relative symlink (what _create_symlink writes), replacing
   * what was there; where symlinks are refused (some network or Windows file systems) the blob is copied instead.
   */
  async link(commit: string, file: string, etag: string): Promise<string> {
    const dst = this.pointer(commit, file);
    const src = this.blob(etag);
    await mkdir(dirname(dst), { recursive: true });
    // made aside and renamed over the old entry: a reader of the snapshot never finds the file missing
    const tmp = `${dst}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await symlink(relative(dirname(dst), src), tmp);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
      await copyFile(src, tmp);
    }
    try {
      await rename(tmp, dst);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    return dst;
  }

  async tagCacheDir(): Promise<void> {
    const p = join(this.cacheDir, 'CACHEDIR.TAG');
    if (existsSync(p)) return;
    try {
      await mkdir(this.cacheDir, { recursive: true });
      await writeFile(p, CACHEDIR_TAG, { flag: 'wx' });
    } catch {
      /* exists (a concurrent writer) or read-only: not needed to work */
    }
  }
}

/** Size of a file, or -1 when it does not exist. */
export async function sizeOf(p: string): Promise<number> {
  try {
    return (await stat(p)).size;
  } catch {
    return -1;
  }
}

/** Removes a file, ignoring its absence. */
export async function removeFile(p: string): Promise<void> {
  await unlink(p).catch(() => undefined);
}
