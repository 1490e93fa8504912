// Crash-safe writes. A file is written to a temporary name, flushed and renamed over the old one. A folder save
// (heads, LoRA adapters, Trainer checkpoints, saveBackbone, the CLI's run folder) is all-or-nothing: the whole new
// folder is built next to the target, flushed, and swapped with it in one atomic step (renameat2 RENAME_EXCHANGE on
// Linux, renamex_np RENAME_SWAP on macOS, through the addon), so a process killed at any instant leaves exactly the
// previous save or exactly the new one, and a reader never sees a mix. Python reads the folder as before: it is a
// plain folder at its own path.
//
// What a folder save owns: the entries its `owns` predicate names (its own file names, and those of the save it
// replaces). Every other entry of the target (a user's files, other checkpoints) is carried into the new folder as a
// hard link (a copy where links are not possible), so it survives the swap unchanged.
//
// Leftovers of killed saves are siblings named `.<name>.tmp-<pid>-<hex>` (a folder being built, or the old one being
// deleted), `.<name>.old-<pid>-<hex>` (the two-rename fallback's old folder) and `.<name>.del-<pid>-<hex>` (a folder
// being removed), and files `<file>.tmp-<pid>-<hex>` inside a folder. The next save in the same place removes those
// whose process is gone (an `.old-` folder whose target is missing is renamed back: it is the last complete save).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { appendFile, chmod, copyFile, link, lstat, mkdir, open, readdir, readlink, realpath, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

import { fromNative, TransformerHeadsError } from '../errors.js';
import { ensureNative } from '../native/index.js';

const SIBLING_RE = /^\.(.+)\.(tmp|old|del)-(\d+)-([0-9a-f]{12})$/;
const FILE_TMP_RE = /^(.+)\.tmp-(?:(\d+)-)?([0-9a-f]{12})$/; // without a pid: written by versions before 0.2
/** Foreign entries carried into a new folder at most; past this the folder is saved in place (see saveFolder). */
const MAX_CARRIED = 10_000;

/** Temporary paths this process is using right now (never cleaned as leftovers). */
const inFlight = new Set<string>();

function unique(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Whether a leftover named with `pid` may be removed: its process is gone (or it is ours and not in use). */
function stale(path: string, pid: number | undefined): boolean {
  if (pid === undefined) return true;
  if (pid === process.pid) return !inFlight.has(path);
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'EPERM'; // EPERM: alive, another user's
  }
}

function fileError(e: unknown, doing: string, path: string): TransformerHeadsError {
  if (e instanceof TransformerHeadsError) return e;
  const err = e as NodeJS.ErrnoException;
  const why = err.code === 'ENOSPC' ? 'the disk is full' : err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied' : err.code === 'EROFS' ? 'the filesystem is read-only' : (err.code ?? err.message);
  return new TransformerHeadsError(`could not ${doing} '${path}': ${why}`, 'ERR_TH_FILE', { cause: e });
}

/**
 * Data for a file: one buffer or string, or its pieces in order (safetensorsParts: the header, then a view of each
 * tensor's bytes), written one after the other by libuv, off the event loop, without being joined first.
 */
export type FileData = Uint8Array | string | readonly Uint8Array[];

/** Writes and flushes a file (a rename of an unflushed file can leave an empty file after a power loss). */
async function writeDurable(path: string, data: FileData): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await writeFile(fh, data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Flushes a folder's entries (the renames into it). Not possible on Windows, where it is skipped. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    /* EISDIR / EPERM on platforms that cannot open folders: the rename is still atomic */
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Flushes every file and folder under `dir` (what a writer callback wrote without flushing). */
async function syncTree(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await syncTree(p);
    else if (e.isFile()) {
      const fh = await open(p, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDir(dir);
}

/** Removes leftover `<base>.tmp-*` files of dead writers next to `path`. */
async function cleanFileTemps(dir: string, base: string | null): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = FILE_TMP_RE.exec(n);
    if (!m || (base !== null && m[1] !== base)) continue;
    const p = join(dir, n);
    if (stale(p, m[2] === undefined ? undefined : Number(m[2]))) await rm(p, { force: true, recursive: true }).catch(() => undefined);
  }
}

/** Removes (or, for a lost folder, restores) the leftovers of killed folder saves in `parent`. */
async function cleanSiblings(parent: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const n of names) {
    const m = SIBLING_RE.exec(n);
    if (!m) continue;
    const p = join(parent, n);
    if (!stale(p, Number(m[3]))) continue;
    if (m[2] === 'old') {
      // The two-rename fallback died between its renames: the old folder is the last complete save.
      const target = join(parent, m[1]!);
      const missing = await lstat(target).then(
        () => false,
        () => true,
      );
      if (missing && (await rename(p, target).then(() => true, () => false))) continue;
    }
    await rm(p, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Writes `data` to `path` through a temporary file and a rename, so a crash never leaves a half-written file. An
 * array of pieces is written one after the other without being joined first (see FileData).
 */
export async function atomicWrite(file: string, data: FileData): Promise<void> {
  const path = resolve(file);
  const dir = dirname(path);
  await cleanFileTemps(dir, basename(path));
  const tmp = `${path}.tmp-${unique()}`;
  inFlight.add(tmp);
  try {
    await writeDurable(tmp, data);
    await rename(tmp, path);
    await syncDir(dir);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw fileError(e, 'write', file);
  } finally {
    inFlight.delete(tmp);
  }
}

/** Swaps two existing folders atomically; false when the addon, the platform or the filesystem cannot. */
async function exchange(a: string, b: string): Promise<boolean> {
  let native;
  try {
    native = await ensureNative();
  } catch {
    return false;
  }
  if (typeof native.exchangePaths !== 'function') return false;
  try {
    return native.exchangePaths(a, b);
  } catch (e) {
    throw fromNative(e);
  }
}

/** Recreates `src` at `dst` with hard links (copies where the filesystem refuses links), within `budget` entries. */
async function linkTree(src: string, dst: string, budget: { left: number }): Promise<void> {
  if (--budget.left < 0) throw new CarryLimit();
  const st = await lstat(src);
  if (st.isDirectory()) {
    await mkdir(dst);
    for (const n of await readdir(src)) await linkTree(join(src, n), join(dst, n), budget);
  } else if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dst);
  } else if (st.isFile()) {
    try {
      await link(src, dst);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw e;
      await copyFile(src, dst, constants.COPYFILE_FICLONE);
    }
  }
  // sockets, FIFOs and devices are not carried: no save or user data lives in them
}

class CarryLimit extends Error {}

/** Where a folder save goes: the folder itself, or the folder a symbolic link at `dir` points to. */
async function resolveFolder(dir: string): Promise<string> {
  const abs = resolve(dir);
  let st;
  try {
    st = await lstat(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError(e, 'save into', dir);
    await mkdir(dirname(abs), { recursive: true }).catch((e2) => {
      throw fileError(e2, 'create the folder', dirname(abs));
    });
    return real(abs);
  }
  if (st.isSymbolicLink()) {
    let real: string;
    try {
      real = await realpath(abs);
    } catch (e) {
      throw new TransformerHeadsError(`'${dir}' is a symbolic link to a missing folder; create its target or remove the link`, 'ERR_TH_FILE', { cause: e });
    }
    if (!(await stat(real)).isDirectory()) throw new TransformerHeadsError(`'${dir}' links to '${real}', which is not a folder`, 'ERR_TH_FILE');
    return real;
  }
  if (!st.isDirectory()) throw new TransformerHeadsError(`'${dir}' exists and is not a folder; pick a folder path to save into`, 'ERR_TH_FILE');
  return real(abs);
}

/** `path` with its parent's symbolic links resolved (the folder itself is not a link here). */
async function real(path: string): Promise<string> {
  const parent = await realpath(dirname(path)).catch(() => dirname(path));
  return join(parent, basename(path));
}

function inside(path: string, folder: string): boolean {
  const r = relative(folder, path);
  return r === '' || (!isAbsolute(r) && r !== '..' && !r.startsWith(`..${sep}`));
}

/**
 * Saves a folder all-or-nothing. `write(tmp)` writes the new save's entries into an empty folder (plain writes:
 * flushing and atomicity are done here). Entries of the existing folder for which `owns(name)` is false are kept.
 * After any crash, the folder is exactly the previous save or exactly the new one.
 *
 * Where the swap is impossible the entries are replaced one by one instead (each atomically): when the folder's
 * parent is not writable, when this process's working directory is inside the folder (a swap would leave it in the
 * deleted old folder), or when over 10,000 foreign entries would have to be carried over.
 */
export async function saveFolder(dir: string, owns: (name: string) => boolean, write: (tmp: string) => Promise<void>): Promise<void> {
  const target = await resolveFolder(dir);
  const parent = dirname(target);
  const base = basename(target);
  const cwd = await realpath(process.cwd()).catch(() => process.cwd());
  if (base === '' || parent === target || inside(cwd, target)) return saveInPlace(target, owns, write);
  await cleanSiblings(parent);
  const tmp = join(parent, `.${base}.tmp-${unique()}`);
  inFlight.add(tmp);
  try {
    try {
      await mkdir(tmp);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return await saveInPlace(target, owns, write);
      throw fileError(e, 'create a folder next to', target);
    }
    await write(tmp);
    await syncTree(tmp);
    let existed: boolean;
    try {
      existed = await carryOver(target, tmp, owns);
    } catch (e) {
      if (!(e instanceof CarryLimit)) throw fileError(e, 'carry files over from', target);
      await rm(tmp, { recursive: true, force: true });
      return await saveInPlace(target, owns, write);
    }
    await syncDir(tmp);
    await swapIn(tmp, target, existed);
    await syncDir(parent);
  } catch (e) {
    throw fileError(e, 'save', dir);
  } finally {
    // After the swap `tmp` holds the previous save; before it, a partial new one. Either way it goes.
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    inFlight.delete(tmp);
  }
}

/** Links the entries of `target` that the save does not own into `tmp`; false when there is no target yet. */
async function carryOver(target: string, tmp: string, owns: (name: string) => boolean): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  // The folder keeps its permissions (a shared group folder, a private 0700 one) across the swap.
  await chmod(tmp, (await stat(target)).mode & 0o7777).catch(() => undefined);
  const written = new Set(await readdir(tmp));
  const budget = { left: MAX_CARRIED };
  for (const n of names) {
    if (owns(n) || written.has(n)) continue;
    const m = FILE_TMP_RE.exec(n);
    if (m && stale(join(target, n), m[2] === undefined ? undefined : Number(m[2]))) continue; // a killed write's leftover
    await linkTree(join(target, n), join(tmp, n), budget);
  }
  return true;
}

async function swapIn(tmp: string, target: string, existed: boolean): Promise<void> {
  if (!existed) {
    try {
      await rename(tmp, target);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e; // created meanwhile by someone else: swap below
    }
  }
  if (await exchange(tmp, target)) return;
  // No atomic swap here: two renames. A crash between them leaves the target missing and the old folder at
  // `.<name>.old-*`, which the next save (cleanSiblings) renames back.
  const old = join(dirname(target), `.${basename(target)}.old-${unique()}`);
  inFlight.add(old);
  try {
    await rename(target, old);
    await rename(tmp, target);
    await rm(old, { recursive: true, force: true });
  } finally {
    inFlight.delete(old);
  }
}

/** The fallback of saveFolder: the new entries are renamed into the folder one by one, then owned extras removed. */
async function saveInPlace(target: string, owns: (name: string) => boolean, write: (tmp: string) => Promise<void>): Promise<void> {
  try {
    await mkdir(target, { recursive: true });
    await cleanFileTemps(target, null);
    await cleanSiblings(target);
    const stage = join(target, `.save.tmp-${unique()}`);
    inFlight.add(stage);
    try {
      await mkdir(stage);
      await write(stage);
      await syncTree(stage);
      const fresh = new Set(await readdir(stage));
      for (const n of fresh) {
        const dst = join(target, n);
        const [old, neu] = await Promise.all([lstat(dst).catch(() => null), lstat(join(stage, n))]);
        if (old && (old.isDirectory() || neu.isDirectory())) await removePath(dst); // rename replaces files only
        await rename(join(stage, n), dst);
      }
      for (const n of await readdir(target)) {
        if (fresh.has(n) || !owns(n) || SIBLING_RE.test(n)) continue;
        await removePath(join(target, n));
      }
      await syncDir(target);
    } finally {
      await rm(stage, { recursive: true, force: true }).catch(() => undefined);
      inFlight.delete(stage);
    }
  } catch (e) {
    throw fileError(e, 'save', target);
  }
}

/** Removes a file or folder so that a crash midway leaves nothing half-deleted at its name (only a leftover to clean). */
export async function removePath(entry: string): Promise<void> {
  const path = resolve(entry);
  const gone = join(dirname(path), `.${basename(path)}.del-${unique()}`);
  inFlight.add(gone);
  try {
    await rename(path, gone);
    await rm(gone, { recursive: true, force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError(e, 'remove', path);
  } finally {
    inFlight.delete(gone);
  }
}

/** mkdir -p whose failure (permissions, a file in the way, a full disk) is an ERR_TH_FILE naming the folder. */
export async function ensureFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw fileError(e, 'create the folder', dir);
  }
}

/** Appends text to a file (logs written as training goes); a failure is an ERR_TH_FILE naming the file. */
export async function appendText(path: string, text: string): Promise<void> {
  try {
    await appendFile(path, text);
  } catch (e) {
    throw fileError(e, 'append to', path);
  }
}
