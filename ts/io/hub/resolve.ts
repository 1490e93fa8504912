// Model names to local folders: a path that exists is used as it is; "org/name[@revision]" is looked up in the
// Hugging Face cache and, when files are missing, downloaded from the Hub into it (only the files this library
// reads, never pickle weights). The folder handed on is the snapshot folder, snapshots/<commit>, which the native
// loader reads like any model folder.
//
// Loading is cache-first: a revision already in the cache with every file needed (or known absent) is used with no
// request at all, so a second load works offline and costs nothing. downloadModel() (the CLI's `download`) always
// asks the Hub which commit the revision names now, and fetches it if it changed.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

import { invalidArg, TransformerHeadsError } from '../../errors.js';
import { checkRepoFile, RepoCache, sizeOf } from './cache.js';
import { ensureBlob } from './download.js';
import { Tally, type DownloadProgress } from './progress.js';
import { fileMetadata, modelInfo, type FileMetadata, type HubTarget } from './http.js';
import { isRevision, parseRepoRef } from './repo.js';
import { hubCacheDir, hubEndpoint, hubOffline, hubTimeouts, hubToken } from './settings.js';

/** Which files of a repository a caller needs. */
export type HubFiles = 'model' | 'config' | 'tokenizer' | 'heads';

/** Where and how a Hub model is fetched. Every field is optional; the defaults are huggingface_hub's. */
export interface HubOptions {
  /** Branch, tag, commit hash or 'refs/pr/N'. Defaults to the '@revision' of the name, else 'main'. */
  revision?: string;
  /** The cache folder. Defaults to HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (Python's). */
  cacheDir?: string;
  /** Use the cache only, never the network. Defaults to HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Token for gated and private models; false sends none. Defaults to HF_TOKEN, else the token file of `huggingface-cli login`. */
  token?: string | false;
  /** The Hub (or a mirror). Defaults to HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Called as files download (at most every 100 ms, and once per finished file). */
  onProgress?: (progress: DownloadProgress) => void;
  /** Stops a download (ERR_TH_ABORTED); the partial file is kept and the next call resumes it. */
  signal?: AbortSignal;
}

export interface ResolveModelOptions extends HubOptions {
  /**
   * 'model' (default): config.json, the safetensors weights (single or sharded) and the tokenizer and generation
   * files; 'config': config.json; 'tokenizer': tokenizer.json, tokenizer_config.json and config.json; 'heads': a
   * folder saved by HeadedModel.save(): head_configs.json, the head files and a LoRA adapter if there is one.
   */
  files?: HubFiles;
}

const HUB_KEYS = ['revision', 'cacheDir', 'offline', 'token', 'endpoint', 'onProgress', 'signal'] as const;

/** @internal The Hub options among a loader's options. */
export function hubOptionsOf(o: object | null | undefined): HubOptions {
  const out: Record<string, unknown> = {};
  if (o) for (const k of HUB_KEYS) if ((o as Record<string, unknown>)[k] !== undefined) out[k] = (o as Record<string, unknown>)[k];
  return out as HubOptions;
}

export interface DownloadResult {
  repoId: string;
  revision: string;
  commit: string;
  /** The snapshot folder: pass it (or the repo id) to any loader. */
  path: string;
  /** The files the snapshot holds for this use. */
  files: string[];
  /** The files fetched by this call (the others were in the cache). */
  downloaded: string[];
  bytesDownloaded: number;
  /** True when the Hub could not be asked (offline, or unreachable) and the cached snapshot was used. */
  fromCache: boolean;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];
const PICKLE_RE = /(^|\/)(pytorch_model.*\.bin|.*\.(pt|pth|ckpt|pkl))$/;

interface Settings {
  repoId: string;
  revision: string;
  cache: RepoCache;
  endpoint: string;
  offline: boolean;
  auth: Record<string, string>;
  kind: HubFiles;
  options: HubOptions;
  timeouts: { metadataMs: number; downloadMs: number };
}

function settingsFor(repoId: string, revisionFromName: string | null, o: ResolveModelOptions): Settings {
  if (o.revision !== undefined && (typeof o.revision !== 'string' || !isRevision(o.revision))) invalidArg('revision', 'a branch, tag or commit name', o.revision);
  if (o.revision !== undefined && revisionFromName !== null && o.revision !== revisionFromName) {
    throw new TransformerHeadsError(`two revisions for '${repoId}': '@${revisionFromName}' in the name and revision: '${o.revision}'`, 'ERR_TH_ARG');
  }
  const token = o.token === false ? null : (o.token ?? hubToken());
  const kind = o.files ?? 'model';
  if (!['model', 'config', 'tokenizer', 'heads'].includes(kind)) invalidArg('files', "'model', 'config', 'tokenizer' or 'heads'", kind);
  return {
    repoId,
    revision: o.revision ?? revisionFromName ?? 'main',
    cache: new RepoCache(o.cacheDir ?? hubCacheDir(), repoId),
    endpoint: (o.endpoint ?? hubEndpoint()).replace(/\/+$/, ''),
    offline: o.offline ?? hubOffline(),
    auth: token ? { authorization: `Bearer ${token}` } : {},
    kind,
    options: o,
    timeouts: hubTimeouts(),
  };
}

function target(s: Settings, revision = s.revision, file?: string): HubTarget {
  return { endpoint: s.endpoint, repoId: s.repoId, revision, withToken: 'authorization' in s.auth, ...(file ? { file } : {}) };
}

/**
 * A local folder or file for a model name: `nameOrPath` itself when it exists on disk (a path always wins), else the
 * cached (and if needed downloaded) snapshot of the Hub repository "org/name" or "org/name@revision".
 */
export async function resolveModel(nameOrPath: string, options: ResolveModelOptions = {}): Promise<string> {
  if (typeof nameOrPath !== 'string' || !nameOrPath) invalidArg('nameOrPath', 'a path or a Hub repo id', nameOrPath);
  if (options === null || typeof options !== 'object') invalidArg('options', 'an object', options);
  if (existsSync(nameOrPath)) return nameOrPath;
  const ref = parseRepoRef(nameOrPath);
  if (!ref) return nameOrPath; // not shaped like a repo id: the loader reports the missing path as before
  const s = settingsFor(ref.repoId, ref.revision, options);
  try {
    return (await snapshot(s, 'cache-first', nameOrPath)).path;
  } catch (e) {
    // "org/name" may also have been meant as a local folder: say that it is not one
    if (e instanceof TransformerHeadsError && (e.code === 'ERR_TH_HUB_NOT_FOUND' || e.code === 'ERR_TH_NETWORK') && !ref.revision && options.revision === undefined) {
      const [first, ...rest] = e.message.split('\n');
      throw new TransformerHeadsError([`'${nameOrPath}' is not a local path, and as a Hub model: ${first}`, ...rest].join('\n'), e.code, { cause: e });
    }
    throw e;
  }
}

/**
 * Fetches a Hub model into the cache, asking the Hub for the revision's current commit even when a snapshot is
 * cached (offline: checks the cache only). Returns where it is.
 */
export async function downloadModel(repoId: string, options: ResolveModelOptions = {}): Promise<DownloadResult> {
  const ref = typeof repoId === 'string' ? parseRepoRef(repoId) : null;
  if (!ref) invalidArg('repoId', "a Hub repo id 'org/name' (or 'org/name@revision')", repoId);
  if (options === null || typeof options !== 'object') invalidArg('options', 'an object', options);
  return snapshot(settingsFor(ref.repoId, ref.revision, options), 'refresh', repoId);
}

/** What a cached snapshot holds for a use: the required files all there, and every optional one known. */
async function localState(s: Settings, commit: string): Promise<{ ok: boolean; complete: boolean; missing: string[]; files: string[] }> {
  const c = s.cache;
  const missing: string[] = [];
  const files: string[] = [];
  let complete = true;
  const need = (f: string) => {
    if (c.state(commit, f) === 'present') files.push(f);
    else missing.push(f);
  };
  const want = (f: string) => {
    const st = c.state(commit, f);
    if (st === 'present') files.push(f);
    else if (st === 'unknown') complete = false;
  };
  const json = async (f: string): Promise<Record<string, unknown> | null> => {
    try {
      return JSON.parse(await readFile(c.pointer(commit, f), 'utf8')) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  if (s.kind === 'config') need('config.json');
  else if (s.kind === 'tokenizer') {
    need('tokenizer.json');
    want('tokenizer_config.json');
    want('config.json');
  } else if (s.kind === 'model') {
    need('config.json');
    if (c.state(commit, 'model.safetensors') === 'present') files.push('model.safetensors');
    else if (c.state(commit, 'model.safetensors.index.json') === 'present') {
      files.push('model.safetensors.index.json');
      const idx = await json('model.safetensors.index.json');
      const shards = shardsOf(idx);
      if (!shards) missing.push('model.safetensors.index.json');
      else shards.forEach(need);
    } else missing.push('model.safetensors');
    for (const f of [...TOKENIZER_FILES, 'generation_config.json']) want(f);
  } else {
    need('head_configs.json');
    const heads = headFilesOf(await json('head_configs.json'));
    heads?.forEach(want);
    want('adapter_config.json');
    if (c.state(commit, 'adapter_config.json') === 'present') need('adapter_model.safetensors');
  }
  return { ok: missing.length === 0, complete, missing, files };
}

function shardsOf(index: Record<string, unknown> | null): string[] | null {
  const map = index?.weight_map;
  if (!map || typeof map !== 'object') return null;
  const names = [...new Set(Object.values(map as Record<string, unknown>))];
  return names.every((n) => typeof n === 'string') ? (names as string[]) : null;
}

/** <name>.safetensors for each head that HeadedModel.save() writes a file for (every one but lm_head). */
function headFilesOf(configs: Record<string, unknown> | null): string[] | null {
  if (!configs) return null;
  return Object.entries(configs)
    .map(([key, v]) => (v && typeof v === 'object' && typeof (v as { name?: unknown }).name === 'string' ? (v as { name: string }).name : key))
    .filter((n) => n !== 'lm_head')
    .map((n) => `${n}.safetensors`);
}

async function snapshot(s: Settings, mode: 'cache-first' | 'refresh', asGiven: string): Promise<DownloadResult> {
  const cachedCommit = s.cache.commitOf(s.revision);
  const cached = cachedCommit ? await localState(s, cachedCommit) : null;
  const fromCache = (commit: string, files: string[]): DownloadResult => ({
    repoId: s.repoId,
    revision: s.revision,
    commit,
    path: s.cache.snapshot(commit),
    files,
    downloaded: [],
    bytesDownloaded: 0,
    fromCache: true,
  });
  if (s.offline) {
    if (cachedCommit && cached?.ok) return fromCache(cachedCommit, cached.files);
    throw offlineError(s, asGiven, cachedCommit, cached?.missing ?? null);
  }
  if (mode === 'cache-first' && cachedCommit && cached?.ok && cached.complete) return fromCache(cachedCommit, cached.files);
  try {
    return await online(s);
  } catch (e) {
    // As huggingface_hub: when the Hub cannot be asked (unreachable; for a load also refused or gone), a cached
    // snapshot with every required file is used. downloadModel() reports a refusal rather than hiding it.
    const fallback = mode === 'cache-first' ? ['ERR_TH_NETWORK', 'ERR_TH_HUB_AUTH', 'ERR_TH_HUB_NOT_FOUND'] : ['ERR_TH_NETWORK'];
    if (e instanceof TransformerHeadsError && fallback.includes(e.code) && cachedCommit && cached?.ok && !s.options.signal?.aborted) return fromCache(cachedCommit, cached.files);
    throw e;
  }
}

function offlineError(s: Settings, asGiven: string, commit: string | null, missing: string[] | null): TransformerHeadsError {
  const where = `the cache (${s.cache.cacheDir})`;
  const pickle = commit && missing?.includes('model.safetensors') && existsSync(s.cache.pointer(commit, 'pytorch_model.bin'));
  const why = !commit
    ? `'${asGiven}' is not a local path, and revision '${s.revision}' of '${s.repoId}' is not in ${where}`
    : pickle
      ? `the cached '${s.repoId}' (revision '${s.revision}') has only pickle weights (pytorch_model.bin), which this library does not load`
      : `the cached '${s.repoId}' (revision '${s.revision}', commit ${commit.slice(0, 12)}) lacks ${missing!.join(', ')}`;
  return new TransformerHeadsError(
    `offline mode (HF_HUB_OFFLINE or --offline): ${why}\ndownload it once while online ('transformer-heads download ${s.repoId}${s.revision === 'main' ? '' : `@${s.revision}`}'), or point HF_HUB_CACHE at a cache that has it`,
    'ERR_TH_OFFLINE',
  );
}

/** Runs `fn` over `items`, at most `n` at a time; the first failure stops the rest (`onFail` cancels those running). */
async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>, onFail?: () => void): Promise<void> {
  let i = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (failed === null && i < items.length) {
      const item = items[i++]!;
      try {
        await fn(item);
      } catch (e) {
        if (failed === null) {
          failed = e;
          onFail?.();
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== null) throw failed;
}

async function online(s: Settings): Promise<DownloadResult> {
  const req = { headers: s.auth, ...(s.options.signal ? { signal: s.options.signal } : {}), timeoutMs: s.timeouts.metadataMs };
  const info = await modelInfo(s.endpoint, target(s), req);
  const commit = info.sha;
  const listed = info.files ? new Set(info.files) : null;
  const c = s.cache;
  const tally = new Tally(s, commit);
  const metas = new Map<string, FileMetadata | null>();
  const downloaded: string[] = [];
  const present: string[] = [];

  // Metadata of a file at this commit (null: not in the repository). The file list answers "is it there" when
  // the Hub gave one; a HEAD on the resolve endpoint gives the etag and size, as hf_hub_download does.
  const meta = async (file: string): Promise<FileMetadata | null> => {
    if (metas.has(file)) return metas.get(file)!;
    let m: FileMetadata | null = null;
    if (listed && !listed.has(file)) m = null;
    else {
      const r = await fileMetadata(`${s.endpoint}/${s.repoId}/resolve/${commit}/${file.split('/').map(encodeURIComponent).join('/')}`, target(s, commit, file), req);
      m = 'missing' in r ? null : r;
    }
    metas.set(file, m);
    return m;
  };
  const exists = async (file: string) => c.state(commit, file) === 'present' || (await meta(file)) !== null;

  // Files are planned first (their metadata asked, those already cached linked), then fetched together, so that
  // the progress total is known from the start. Small files that name the others (a shard index, head_configs.json,
  // adapter_config.json) are fetched on their own first, outside the progress count.
  const planned: Array<{ file: string; m: FileMetadata }> = [];
  const plan = async (files: string[], required: (f: string) => boolean): Promise<void> => {
    files.forEach(checkRepoFile); // names read from the repository's own files (index, head_configs.json)
    await pool(files, 8, async (file) => {
      if (c.state(commit, file) === 'present') {
        present.push(file);
        return;
      }
      const m = await meta(file);
      if (!m) {
        if (required(file)) throw missingError(s, file, listed);
        await c.markAbsent(commit, file);
        return;
      }
      if ((await sizeOf(c.blob(m.etag))) === m.size) {
        await c.link(commit, file, m.etag);
        present.push(file);
        return;
      }
      planned.push({ file, m });
    });
  };
  const run = async (counted: boolean): Promise<void> => {
    const todo = planned.splice(0);
    if (todo.length === 0) return;
    await c.tagCacheDir();
    if (counted) {
      for (const { file, m } of todo) tally.plan(file, m.size);
      tally.start();
    }
    // one failed file stops the others (their partial files stay, resumable) instead of letting them run on
    const stop = new AbortController();
    const forward = () => stop.abort(s.options.signal?.reason);
    s.options.signal?.addEventListener('abort', forward, { once: true });
    if (s.options.signal?.aborted) forward();
    try {
      await pool(todo, 4, (t) => fetchOne(t, stop.signal), () => stop.abort());
    } finally {
      s.options.signal?.removeEventListener('abort', forward);
    }
  };
  const fetchOne = async ({ file, m }: { file: string; m: FileMetadata }, signal: AbortSignal): Promise<void> => {
    await ensureBlob({
      cache: c,
      meta: m,
      file,
      target: target(s, commit, file),
      auth: s.auth,
      signal,
      timeoutMs: s.timeouts.downloadMs,
      onFileBytes: (n) => tally.bytes(file, n),
      onResume: (n) => tally.resumed(file, n),
      ...(retryDelayMs !== null ? { retryDelayMs } : {}),
    });
    await c.link(commit, file, m.etag);
    tally.done(file);
    downloaded.push(file);
    present.push(file);
  };
  const first = async (file: string, required: boolean): Promise<void> => {
    await plan([file], () => required);
    await run(false);
  };
  const readJson = async (file: string): Promise<Record<string, unknown> | null> => {
    try {
      return JSON.parse(await readFile(c.pointer(commit, file), 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new TransformerHeadsError(`'${file}' of '${s.repoId}' is not valid JSON: ${(e as Error).message}`, 'ERR_TH_CONFIG');
    }
  };

  const all = () => true;
  const none = () => false;
  if (s.kind === 'config') await plan(['config.json'], all);
  else if (s.kind === 'tokenizer') {
    await plan(['tokenizer.json'], all);
    await plan(['tokenizer_config.json', 'config.json'], none);
  } else if (s.kind === 'model') {
    if (!(await exists('config.json'))) throw missingError(s, 'config.json', listed);
    let weights: string[];
    if (await exists('model.safetensors')) weights = ['model.safetensors'];
    else if (await exists('model.safetensors.index.json')) {
      await first('model.safetensors.index.json', true);
      const shards = shardsOf(await readJson('model.safetensors.index.json'));
      if (!shards) throw new TransformerHeadsError(`model.safetensors.index.json of '${s.repoId}' has no weight_map`, 'ERR_TH_CONFIG');
      weights = shards;
    } else throw await noWeightsError(s, listed, exists);
    await plan(['config.json', ...weights], all);
    await plan([...TOKENIZER_FILES, 'generation_config.json'], none);
  } else {
    await first('head_configs.json', true);
    const heads = headFilesOf(await readJson('head_configs.json')) ?? [];
    await first('adapter_config.json', false);
    const lora = c.state(commit, 'adapter_config.json') === 'present';
    if (lora && !(await exists('adapter_model.safetensors')) && (listed?.has('adapter_model.bin') || (await meta('adapter_model.bin')))) {
      throw new TransformerHeadsError(
        `the LoRA adapter of '${s.repoId}' is only in pickle format (adapter_model.bin), which this library does not load\nsave it again with PEFT's save_pretrained(..., safe_serialization=True) to get adapter_model.safetensors`,
        'ERR_TH_HUB_NOT_FOUND',
      );
    }
    await plan([...heads, ...(lora ? ['adapter_model.safetensors'] : [])], (f) => f === 'adapter_model.safetensors' || heads.includes(f));
  }
  await run(true);
  await c.writeRef(s.revision, commit);
  tally.finish();
  return {
    repoId: s.repoId,
    revision: s.revision,
    commit,
    path: c.snapshot(commit),
    files: [...new Set(present)].sort(),
    downloaded: downloaded.sort(),
    bytesDownloaded: tally.received,
    fromCache: false,
  };
}

let retryDelayMs: number | null = null;
/** @internal tests shorten the pause before a dropped connection is retried */
export function setRetryDelayForTests(ms: number | null): void {
  retryDelayMs = ms;
}

function missingError(s: Settings, file: string, listed: Set<string> | null): TransformerHeadsError {
  const at = s.revision === 'main' ? '' : ` at revision '${s.revision}'`;
  let hint = `see the files on ${s.endpoint}/${s.repoId}/tree/${encodeURIComponent(s.revision)}`;
  if (file === 'config.json' && listed?.has('adapter_config.json')) hint = 'it holds an adapter: load it with loadLoraWithHeads(), with its base model';
  else if (file === 'config.json') hint = 'it is not a transformers model folder (a GGUF, ONNX or dataset repository?); pick the original model repository';
  else if (file === 'head_configs.json') hint = 'loadHeaded({ headFolder }) and loadLoraWithHeads() read folders written by HeadedModel.save() (or the Python transformer-heads)';
  return new TransformerHeadsError(`'${s.repoId}'${at} has no ${file}\n${hint}`, 'ERR_TH_HUB_NOT_FOUND');
}

async function noWeightsError(s: Settings, listed: Set<string> | null, exists: (f: string) => Promise<boolean>): Promise<TransformerHeadsError> {
  const pickles = listed ? [...listed].filter((f) => PICKLE_RE.test(f)) : (await exists('pytorch_model.bin')) ? ['pytorch_model.bin'] : (await exists('pytorch_model.bin.index.json')) ? ['pytorch_model.bin.index.json'] : [];
  const at = s.revision === 'main' ? '' : ` at revision '${s.revision}'`;
  if (pickles.length) {
    return new TransformerHeadsError(
      `'${s.repoId}'${at} has only pickle weights (${pickles.slice(0, 3).join(', ')}${pickles.length > 3 ? ', ...' : ''}), which this library does not load (unpickling can run code)\n` +
        `look for a safetensors version: the Hub's conversion bot often has one as a pull request ('${s.repoId}@refs/pr/N', see ${s.endpoint}/${s.repoId}/discussions), or convert it in Python with save_pretrained(dir, safe_serialization=True)`,
      'ERR_TH_HUB_NOT_FOUND',
    );
  }
  return new TransformerHeadsError(`'${s.repoId}'${at} has no model.safetensors or model.safetensors.index.json\nsee the files on ${s.endpoint}/${s.repoId}/tree/${encodeURIComponent(s.revision)}`, 'ERR_TH_HUB_NOT_FOUND');
}
