// Models by Hub id ("org/name[@revision]") against a fake Hub on 127.0.0.1 (test/hub-server.ts: the resolve
// endpoint's headers, CDN redirects, Range, 401/403/404) and against a cache laid out by Python
// (test/hf_cache.py, standard library, following huggingface_hub's documented layout). No traffic leaves the machine.
// References: loading the fixture folder directly (hidden states equal bit for bit), the server's request log, the
// sha256 / git sha1 of the served files, and the Python reader of the cache.
// Over 500 lines: one file because every case shares the fake Hub, its request log and a fresh cache per test.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { setRetryDelayForTests } from '../ts/io/hub/resolve.js';
import {
  downloadModel,
  hubCacheDir,
  loadBackbone,
  loadHeaded,
  loadLoraWithHeads,
  createHeadedQLoRA,
  loadTokenizer,
  readModelConfig,
  resolveModel,
  type Backbone,
  type Batch,
  type DownloadProgress,
} from '../ts/index.js';
import { FakeHub, folderFiles } from './hub-server.js';
import { ensureDist, fixture, maxDiff, rejection, root } from './helpers.js';

const GPT2 = 'th-test/tiny-gpt2';
const LLAMA = 'th-test/tiny-llama';
const GATED = 'th-test/gated-gpt2';
const PICKLE = 'th-test/pickle-only';
const batch: Batch = { input_ids: [[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]], attention_mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]] };
const python = '/usr/bin/python3';
const cacheScript = join(root, 'test', 'hf_cache.py');

let hub: FakeHub;
let cache: string;
const savedEnv = { ...process.env };

async function states(m: Backbone) {
  const L = m.numLayers;
  const out = await m.forward(batch, { layers: Array.from({ length: L + 1 }, (_, i) => i), logits: true });
  return [...Array.from({ length: L + 1 }, (_, i) => out.hiddenStates.get(i)!), out.logits!];
}

/** Both models compute exactly the same hidden states and logits. */
async function expectSame(a: Backbone, b: Backbone) {
  const x = await states(a);
  const y = await states(b);
  x.forEach((t, i) => expect(maxDiff(t, y[i]!), `output ${i}`).toBe(0));
}

const repoDir = (id: string) => join(cache, `models--${id.replace('/', '--')}`);
const gets = (path: RegExp) => hub.requests.filter((r) => r.method === 'GET' && path.test(r.path));

/** The CLI in a child process (asynchronously: the fake Hub answers from this process's event loop). */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  ensureDist();
  return new Promise((res) => {
    const c = spawn(process.execPath, [join(root, 'dist', 'cli.js'), ...args], { env: { ...process.env, OMP_NUM_THREADS: '1', ...env } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (code) => res({ code, out, err }));
  });
}

/** Runs Python asynchronously (the fake Hub must keep answering). */
function py(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res) => {
    const c = spawn(python, args, { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (code) => res({ code, out, err }));
  });
}

function pyRead(repo: string, revision: string, files: string[]) {
  const r = spawnSync(python, [cacheScript, 'read', cache, repo, revision, ...files], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as { ref: string | null; incomplete: string[]; files: Record<string, { path: string | null; link?: string; blob_name?: string; blob_in_blobs?: boolean; etag_matches?: boolean; size?: number }> };
}

beforeAll(async () => {
  // v1: the float16 copy of the weights (outputs visibly different from main's float32 ones), with main's tokenizer
  const v1 = { ...folderFiles(fixture('hf-tiny-gpt2-f16')), ...folderFiles(fixture('hf-tiny-gpt2'), ['tokenizer.json', 'tokenizer_config.json']) };
  hub = await new FakeHub({
    [GPT2]: { commits: [{ files: v1, refs: ['v1'] }, { files: folderFiles(fixture('hf-tiny-gpt2')) }] },
    [LLAMA]: { commits: [{ files: folderFiles(fixture('hf-tiny-llama')) }] },
    [GATED]: { gated: true, commits: [{ files: folderFiles(fixture('hf-tiny-gpt2')) }] },
    [PICKLE]: { commits: [{ files: { 'config.json': readFileSync(fixture('hf-tiny-gpt2/config.json')), 'pytorch_model.bin': Buffer.alloc(4096, 7) } }] },
  }).start();
  hub.renamed.set('th-test/old-name', GPT2);
  setRetryDelayForTests(5);
});

afterAll(async () => {
  setRetryDelayForTests(null);
  await hub.close();
});

beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'th-hub-'));
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE']) delete process.env[k];
  process.env.HF_HOME = join(cache, 'home'); // no token file of the machine's user
  process.env.HF_HUB_CACHE = cache;
  process.env.HF_ENDPOINT = hub.endpoint;
  hub.take();
  hub.faults.dropAfter.clear();
  hub.faults.corrupt.clear();
  hub.faults.sizeSkew.clear();
  hub.faults.cdnBytesPerSecond = 0;
});

afterEach(() => {
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
});

describe('a cold download, then the cache', () => {
  it('loads the same model as the folder, lays the cache out as huggingface_hub does, and a second load asks nothing', async () => {
    expect(hubCacheDir()).toBe(cache);
    const events: DownloadProgress[] = [];
    const m = await loadBackbone(GPT2, { onProgress: (p) => events.push(p) });
    const direct = await loadBackbone(fixture('hf-tiny-gpt2'));
    await expectSame(m, direct);
    const commit = hub.commit(GPT2);
    expect(m.path).toBe(join(repoDir(GPT2), 'snapshots', commit));

    // exactly the files needed, each fetched once; the weights from the CDN, without the token
    const reqs = hub.take();
    expect(reqs.filter((r) => r.method === 'GET' && r.server === 'hub' && r.path.includes('/resolve/')).map((r) => r.path.split('/').pop()).sort()).toEqual(['config.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(reqs.filter((r) => r.server === 'cdn').map((r) => r.path.split('?')[0])).toEqual([`/blobs/${hub.file(GPT2, 'model.safetensors').sha256}`]);
    expect(reqs.some((r) => r.path.includes('generation_config.json') && r.method === 'GET')).toBe(false);

    // blobs named by etag, relative links, the ref without a newline, the absent file remembered
    const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
    for (const f of files) {
      const link = join(repoDir(GPT2), 'snapshots', commit, f);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      const served = hub.file(GPT2, f);
      expect(readlinkSync(link)).toBe(`../../blobs/${served.lfs ? served.sha256 : served.gitSha1}`);
    }
    expect(readFileSync(join(repoDir(GPT2), 'refs', 'main'), 'utf8')).toBe(commit);
    expect(existsSync(join(repoDir(GPT2), '.no_exist', commit, 'generation_config.json'))).toBe(true);
    expect(readdirSync(join(repoDir(GPT2), 'blobs')).every((b) => /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(b))).toBe(true);
    expect(readFileSync(join(cache, 'CACHEDIR.TAG'), 'utf8')).toMatch(/^Signature: 8a477f597d28d172789f06886806bc55\n/);

    // what Python's try_to_load_from_cache finds there
    const py = pyRead(GPT2, 'main', [...files, 'generation_config.json']);
    expect(py.ref).toBe(commit);
    for (const f of files) expect(py.files[f]).toMatchObject({ blob_in_blobs: true, etag_matches: true, size: hub.file(GPT2, f).size });
    expect(py.files['generation_config.json']!.path).toBe('NO_EXIST');
    expect(py.incomplete).toEqual([]);

    // progress: start, bytes rising to the total, one 'file' per file, done
    expect(events[0]!.event).toBe('start');
    expect(events.at(-1)).toMatchObject({ event: 'done', filesDone: 4, filesTotal: 4, bytes: events[0]!.totalBytes });
    expect(events.filter((e) => e.event === 'file').map((e) => e.file).sort()).toEqual(files);
    const total = files.reduce((n, f) => n + hub.file(GPT2, f).size, 0);
    expect(events[0]!.totalBytes).toBe(total);

    // second load (and the tokenizer, and the config): no request at all
    const again = await loadBackbone(GPT2);
    await loadTokenizer(GPT2);
    await readModelConfig(GPT2);
    expect(hub.take()).toEqual([]);
    await expectSame(again, direct);
    for (const x of [m, direct, again]) x.dispose();
  });

  it('a sharded model: the index, then its shards', async () => {
    const m = await loadBackbone(LLAMA);
    const direct = await loadBackbone(fixture('hf-tiny-llama'));
    await expectSame(m, direct);
    const cdn = hub.take().filter((r) => r.server === 'cdn').length;
    expect(cdn).toBe(2);
    const d = await downloadModel(LLAMA);
    expect(d.files).toEqual(['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    expect(d.downloaded).toEqual([]);
    // downloadModel asks the Hub for the current commit (one API call and nothing else when it did not move)
    expect(hub.take().map((r) => `${r.method} ${r.path}`)).toEqual([`GET /api/models/${LLAMA}/revision/main`]);
    m.dispose();
    direct.dispose();
  });

  it('loadTokenizer and readModelConfig fetch only their files', async () => {
    const c = await readModelConfig(GPT2);
    expect(c.hiddenSize).toBe(64);
    expect(hub.take().filter((r) => r.method === 'GET' && r.path.includes('/resolve/')).map((r) => r.path.split('/').pop())).toEqual(['config.json']);
    const tok = await loadTokenizer(GPT2);
    const direct = await loadTokenizer(fixture('hf-tiny-gpt2'));
    expect(tok.encode('free money now').ids).toEqual(direct.encode('free money now').ids);
    expect(tok.eosTokenId).toBe(100);
    expect(hub.take().some((r) => r.server === 'cdn')).toBe(false);
  });

  it('a local path that exists wins over a repo id of the same name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'th-hub-local-'));
    mkdirSync(join(dir, 'th-test'));
    spawnSync('cp', ['-r', fixture('hf-tiny-mistral'), join(dir, GPT2)]);
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect(await resolveModel(GPT2)).toBe(GPT2);
      const m = await loadBackbone(GPT2);
      expect(m.config.modelType).toBe('mistral');
      m.dispose();
    } finally {
      process.chdir(cwd);
    }
    expect(hub.take()).toEqual([]);
  });

  it('a renamed repository is followed through the relative redirect', async () => {
    const p = await resolveModel('th-test/old-name', { files: 'config' });
    expect(readFileSync(join(p, 'config.json'), 'utf8')).toBe(readFileSync(fixture('hf-tiny-gpt2/config.json'), 'utf8'));
  });
});

describe('interrupted downloads', () => {
  it('a dropped connection is resumed with a Range request and ends with a valid blob', async () => {
    const w = hub.file(GPT2, 'model.safetensors');
    hub.faults.dropAfter.set('model.safetensors', 300_000);
    const m = await loadBackbone(GPT2);
    const cdn = hub.take().filter((r) => r.server === 'cdn');
    // the second request starts where the first one's bytes stopped arriving (at most the 300000 sent)
    expect(cdn).toHaveLength(2);
    expect(cdn[0]!.range).toBeNull();
    const from = Number(/^bytes=(\d+)-$/.exec(cdn[1]!.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(300_000);
    const blob = join(repoDir(GPT2), 'blobs', w.sha256);
    expect(readFileSync(blob).equals(readFileSync(fixture('hf-tiny-gpt2/model.safetensors')))).toBe(true);
    const direct = await loadBackbone(fixture('hf-tiny-gpt2'));
    await expectSame(m, direct);
    m.dispose();
    direct.dispose();
  });

  it('an aborted download keeps its partial file and the next call resumes it', async () => {
    const w = hub.file(GPT2, 'model.safetensors');
    hub.faults.cdnBytesPerSecond = 2_000_000; // ~0.4 s for the 847 kB file
    const ac = new AbortController();
    const p = loadBackbone(GPT2, {
      signal: ac.signal,
      onProgress: (e) => {
        if (e.file === 'model.safetensors' && e.bytes > 200_000) ac.abort();
      },
    });
    const e = await rejection(p);
    expect(e.code).toBe('ERR_TH_ABORTED');
    const partial = join(repoDir(GPT2), 'blobs', `${w.sha256}.incomplete`);
    const kept = lstatSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(w.size);
    expect(existsSync(join(repoDir(GPT2), 'snapshots', hub.commit(GPT2), 'model.safetensors'))).toBe(false);
    expect(existsSync(join(cache, '.locks', `models--th-test--tiny-gpt2`, `${w.sha256}.lock`))).toBe(false);
    hub.faults.cdnBytesPerSecond = 0;
    hub.take();
    const events: DownloadProgress[] = [];
    const m = await loadBackbone(GPT2, { onProgress: (x) => events.push(x) });
    expect(hub.take().filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(existsSync(partial)).toBe(false);
    expect(events.at(-1)!.bytes).toBe(events.at(-1)!.totalBytes);
    const direct = await loadBackbone(fixture('hf-tiny-gpt2'));
    await expectSame(m, direct);
    m.dispose();
    direct.dispose();
  });
});

describe('a download that crashed', () => {
  it('leaves its partial file under its own name; the next download adopts it a minute later and resumes it', async () => {
    const w = hub.file(GPT2, 'model.safetensors');
    const blobs = join(repoDir(GPT2), 'blobs');
    mkdirSync(blobs, { recursive: true });
    const orphan = join(blobs, `${w.sha256}.0badc0de.incomplete`);
    writeFileSync(orphan, readFileSync(fixture('hf-tiny-gpt2/model.safetensors')).subarray(0, 300_000));
    const old = new Date(Date.now() - 120_000);
    utimesSync(orphan, old, old);
    const m = await loadBackbone(GPT2);
    expect(hub.take().filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual(['bytes=300000-']);
    expect(readdirSync(blobs).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
    expect(readFileSync(join(blobs, w.sha256)).equals(readFileSync(fixture('hf-tiny-gpt2/model.safetensors')))).toBe(true);
    m.dispose();
  });
});

describe('files that do not match what the Hub announced are refused', () => {
  it.each([
    ['a corrupted LFS file (sha256)', 'model.safetensors', 'corrupt', /does not match its sha256 checksum/],
    ['a corrupted git file (git blob sha1)', 'config.json', 'corrupt', /does not match its git sha1 checksum/],
    ['a file longer than announced', 'model.safetensors', 'size', /arrived with \d+ bytes where the Hub announced \d+/],
  ])('%s', async (_name, file, fault, message) => {
    if (fault === 'corrupt') hub.faults.corrupt.add(file);
    else hub.faults.sizeSkew.set(file, -1000);
    const e = await rejection(loadBackbone(GPT2));
    expect(e.code).toBe('ERR_TH_NETWORK');
    expect(e.message).toMatch(message);
    const snap = join(repoDir(GPT2), 'snapshots', hub.commit(GPT2));
    expect(existsSync(join(snap, file))).toBe(false);
    const served = hub.file(GPT2, file);
    const blobs = join(repoDir(GPT2), 'blobs');
    expect(readdirSync(blobs).filter((b) => b.startsWith(served.lfs ? served.sha256 : served.gitSha1))).toEqual([]);
    // and the ref does not point at a snapshot that cannot load
    expect(existsSync(join(repoDir(GPT2), 'refs', 'main'))).toBe(false);
  });
});

describe('concurrent loads', () => {
  it('two loads in one process share one download', async () => {
    hub.faults.cdnBytesPerSecond = 4_000_000;
    const [a, b] = await Promise.all([loadBackbone(GPT2), loadBackbone(GPT2)]);
    expect(gets(/^\/blobs\//).length).toBe(1);
    await expectSame(a, b);
    a.dispose();
    b.dispose();
  });

  it('two processes: one downloads, the other waits for the lock; both load the verified blob', async () => {
    hub.faults.cdnBytesPerSecond = 1_500_000; // ~0.6 s for the weights: the two overlap
    const runOne = () => cli(['download', GPT2, '--json']);
    const [x, y] = await Promise.all([runOne(), runOne()]);
    expect(x.code, x.err).toBe(0);
    expect(y.code, y.err).toBe(0);
    const last = (o: string) => JSON.parse(o.trim().split('\n').at(-1)!) as { path: string; commit: string };
    expect(last(x.out).path).toBe(last(y.out).path);
    expect(gets(/^\/blobs\//).length).toBe(1);
    const py = pyRead(GPT2, 'main', ['model.safetensors']);
    expect(py.files['model.safetensors']).toMatchObject({ etag_matches: true });
    expect(py.incomplete).toEqual([]);
    expect(readdirSync(join(cache, '.locks', 'models--th-test--tiny-gpt2'))).toEqual([]);
  });
});

describe('stale locks', () => {
  it('a lock left by a crashed process, or an empty one left by Python\'s filelock, does not block', async () => {
    const locks = join(cache, '.locks', 'models--th-test--tiny-gpt2');
    mkdirSync(locks, { recursive: true });
    // a process of this host that cannot exist (above Linux's largest pid)
    writeFileSync(join(locks, `${hub.file(GPT2, 'model.safetensors').sha256}.lock`), JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), nonce: 'gone' }));
    writeFileSync(join(locks, `${hub.file(GPT2, 'config.json').gitSha1}.lock`), '');
    const m = await loadBackbone(GPT2);
    expect(readdirSync(locks)).toEqual([]);
    expect(pyRead(GPT2, 'main', ['model.safetensors', 'config.json']).files['model.safetensors']).toMatchObject({ etag_matches: true });
    m.dispose();
  });
});

describe('revisions', () => {
  it('a tag, a commit hash or the revision option pins a snapshot; main stays main', async () => {
    const f16 = await loadBackbone(fixture('hf-tiny-gpt2-f16'));
    const f32 = await loadBackbone(fixture('hf-tiny-gpt2'));
    const v1 = hub.commit(GPT2, 'v1');
    const byTag = await loadBackbone(`${GPT2}@v1`);
    expect(byTag.path).toBe(join(repoDir(GPT2), 'snapshots', v1));
    await expectSame(byTag, f16);
    expect(readFileSync(join(repoDir(GPT2), 'refs', 'v1'), 'utf8')).toBe(v1);
    const byCommit = await loadBackbone(`${GPT2}@${v1}`);
    await expectSame(byCommit, f16);
    const byOption = await loadBackbone(GPT2, { revision: 'v1' });
    await expectSame(byOption, f16);
    const main = await loadBackbone(GPT2);
    await expectSame(main, f32);
    // the two revisions really differ
    expect(maxDiff((await states(main)).at(-1)!, (await states(byTag)).at(-1)!)).toBeGreaterThan(1e-3);
    expect(existsSync(join(repoDir(GPT2), 'refs', `${v1}`))).toBe(false); // a commit needs no ref
    const e = await rejection(loadBackbone(`${GPT2}@no-such-branch`));
    expect(e.code).toBe('ERR_TH_HUB_NOT_FOUND');
    expect(e.message).toMatch(/has no revision 'no-such-branch'/);
    for (const x of [f16, f32, byTag, byCommit, byOption, main]) x.dispose();
  });
});

describe('offline mode and errors', () => {
  it('HF_HUB_OFFLINE=1 with an empty cache fails saying so; with the model cached it loads without a request', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    const e = await rejection(loadBackbone(GPT2));
    expect(e.code).toBe('ERR_TH_OFFLINE');
    expect(e.message).toMatch(/^offline mode \(HF_HUB_OFFLINE or --offline\): 'th-test\/tiny-gpt2' is not a local path, and revision 'main' of 'th-test\/tiny-gpt2' is not in the cache/);
    expect(e.message).toMatch(/transformer-heads download th-test\/tiny-gpt2/);
    expect(hub.take()).toEqual([]);
    delete process.env.HF_HUB_OFFLINE;
    (await loadBackbone(GPT2)).dispose();
    hub.take();
    const m = await loadBackbone(GPT2, { offline: true });
    m.dispose();
    process.env.HF_HUB_OFFLINE = 'yes';
    (await loadBackbone(GPT2)).dispose();
    expect(hub.take()).toEqual([]);
  });

  it('a gated model: 401 without a token, 403 with one that has no access, loads with an accepted one (not sent to the CDN)', async () => {
    let e = await rejection(loadBackbone(GATED));
    expect(e.code).toBe('ERR_TH_HUB_AUTH');
    expect(e.message).toMatch(/'th-test\/gated-gpt2' is a gated model: downloading it needs a token/);
    expect(e.message).toMatch(/accept the license on .*th-test\/gated-gpt2, then set HF_TOKEN/);
    e = await rejection(loadBackbone(GATED, { token: 'hf_not_accepted' }));
    expect(e.code).toBe('ERR_TH_HUB_AUTH');
    expect(e.message).toMatch(/your token has no access to it yet/);
    // the token file of `huggingface-cli login`
    mkdirSync(process.env.HF_HOME!, { recursive: true });
    writeFileSync(join(process.env.HF_HOME!, 'token'), `${hub.acceptedToken}\n`);
    hub.take();
    const m = await loadBackbone(GATED);
    const reqs = hub.take();
    expect(reqs.filter((r) => r.server === 'hub').every((r) => r.auth === `Bearer ${hub.acceptedToken}`)).toBe(true);
    expect(reqs.filter((r) => r.server === 'cdn').map((r) => r.auth)).toEqual([null]);
    const direct = await loadBackbone(fixture('hf-tiny-gpt2'));
    await expectSame(m, direct);
    m.dispose();
    direct.dispose();
  });

  it('no such model, a repository with only pickle weights, a mistyped local folder', async () => {
    let e = await rejection(loadBackbone('th-test/nope'));
    expect(e.code).toBe('ERR_TH_HUB_NOT_FOUND');
    expect(e.message).toMatch(/^'th-test\/nope' is not a local path, and as a Hub model: no model 'th-test\/nope' on http:\/\/127\.0\.0\.1:\d+/);
    e = await rejection(loadBackbone(PICKLE));
    expect(e.code).toBe('ERR_TH_HUB_NOT_FOUND');
    expect(e.message).toMatch(/has only pickle weights \(pytorch_model\.bin\), which this library does not load/);
    expect(gets(/pytorch_model/)).toEqual([]);
    // not shaped like a repo id: the loader's own message, no request
    hub.take();
    e = await rejection(loadBackbone('./no/such/folder'));
    expect(e.code).toBe('ERR_TH_FILE');
    expect(hub.take()).toEqual([]);
  });

  it('a Hub that cannot be reached, or refuses: a clear error; a cached model still loads', async () => {
    process.env.HF_ENDPOINT = 'http://127.0.0.1:9'; // discard port: connection refused
    const e = await rejection(loadBackbone(GPT2));
    expect(e.code).toBe('ERR_TH_NETWORK');
    expect(e.message).toMatch(/could not reach the Hub at http:\/\/127\.0\.0\.1:9/);
    // cached with the optional files unknown (a load would ask the Hub about them): unreachable or refusing, the
    // cache serves; downloadModel reports the refusal
    process.env.HF_ENDPOINT = hub.endpoint;
    const src = mkdtempSync(join(tmpdir(), 'th-hub-src-'));
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(src, f), readFileSync(fixture(`hf-tiny-gpt2/${f}`)));
    expect(spawnSync(python, [cacheScript, 'write', cache, GATED, 'main', hub.commit(GATED), src], { encoding: 'utf8' }).status).toBe(0);
    const m = await loadBackbone(GATED); // no token: 401 on the optional files
    expect(m.config.modelType).toBe('gpt2');
    m.dispose();
    expect((await rejection(downloadModel(GATED))).code).toBe('ERR_TH_HUB_AUTH');
    process.env.HF_ENDPOINT = 'http://127.0.0.1:9';
    (await loadBackbone(GATED)).dispose();
  });
});

describe('a cache written by Python', () => {
  it('loads with no server at all, online or offline', async () => {
    const commit = 'a'.repeat(40);
    const w = spawnSync(python, [cacheScript, 'write', cache, 'python-org/tiny-llama', 'main', commit, fixture('hf-tiny-llama')], { encoding: 'utf8' });
    expect(w.stderr).toBe('');
    expect(w.status).toBe(0);
    process.env.HF_ENDPOINT = 'http://127.0.0.1:9'; // nothing listens: any request would fail
    const m = await loadBackbone('python-org/tiny-llama');
    expect(m.path).toBe(join(cache, 'models--python-org--tiny-llama', 'snapshots', commit));
    const direct = await loadBackbone(fixture('hf-tiny-llama'));
    await expectSame(m, direct);
    process.env.HF_HUB_OFFLINE = '1';
    const off = await loadBackbone(`python-org/tiny-llama@${commit}`);
    await expectSame(off, direct);
    for (const x of [m, direct, off]) x.dispose();
  });

  it('a Python cache with the optional files recorded in .no_exist is complete: online, the Hub is not asked', async () => {
    const commit = hub.commit(GPT2);
    const src = mkdtempSync(join(tmpdir(), 'th-hub-src-'));
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(src, f), readFileSync(fixture(`hf-tiny-gpt2/${f}`)));
    expect(spawnSync(python, [cacheScript, 'write', cache, GPT2, 'main', commit, src, '--absent', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'], { encoding: 'utf8' }).status).toBe(0);
    const m = await loadBackbone(GPT2);
    expect(m.tokenizerJson).toBeNull();
    expect(hub.take()).toEqual([]);
    m.dispose();
  });
});

describe('heads and adapters on the Hub', () => {
  it('a LoRA + heads folder saved on top of a Hub model names it by id, and loads back from a Hub repository', async () => {
    const m = await createHeadedQLoRA(GPT2, { heads: [{ name: 'cls', inSize: 64, layerHook: -1, numOutputs: 3, predForSequence: true }], lora: { r: 4, alpha: 8 }, seed: 3 });
    const dir = mkdtempSync(join(tmpdir(), 'th-hub-lora-'));
    await m.save(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as { base_model_name_or_path: string; revision: string | null };
    expect(cfg.base_model_name_or_path).toBe(GPT2);
    expect(cfg.revision).toBeNull();
    const ref = await m.forward({ input_ids: [[5, 6, 7]] }, { returnPreds: true });
    // the saved folder served as a repository of its own
    const adapters = await new FakeHub({ 'th-test/lora-cls': { commits: [{ files: folderFiles(dir) }] }, [GPT2]: { commits: [{ files: folderFiles(fixture('hf-tiny-gpt2')) }] } }).start();
    try {
      process.env.HF_ENDPOINT = adapters.endpoint;
      const back = await loadLoraWithHeads('th-test/lora-cls', { onlyInference: true });
      const out = await back.forward({ input_ids: [[5, 6, 7]] }, { returnPreds: true });
      expect(maxDiff(out.predsByHead!.get('cls')!, ref.predsByHead!.get('cls')!)).toBe(0);
      expect(adapters.take().filter((r) => r.method === 'GET' && r.path.includes('/resolve/')).map((r) => r.path.split('/').pop()).sort()).toEqual(['adapter_config.json', 'head_configs.json']);
      const headed = await loadHeaded(GPT2, { headFolder: 'th-test/lora-cls', onlyInference: true });
      expect(headed.heads.map((h) => h.name)).toEqual(['cls']);
      for (const x of [back, headed]) x.dispose();
    } finally {
      await adapters.close();
    }
    m.dispose();
  });
});

describe('the command line', () => {
  it('download prints the snapshot folder; a second run only asks for the commit; probe --model ORG/NAME runs on the cache', async () => {
    let r = await cli(['download', GPT2]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim()).toBe(join(repoDir(GPT2), 'snapshots', hub.commit(GPT2)));
    expect(r.err).toMatch(/th-test\/tiny-gpt2: 4 files, 850 kB in/);
    hub.take();
    r = await cli(['download', `${GPT2}@v1`, '--files', 'config']);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim()).toBe(join(repoDir(GPT2), 'snapshots', hub.commit(GPT2, 'v1')));
    hub.take();
    r = await cli(['download', GPT2]);
    expect(r.err).toMatch(/up to date \(commit [0-9a-f]{12}\)/);
    expect(hub.take().map((q) => q.path)).toEqual([`/api/models/${GPT2}/revision/main`]);
    r = await cli(['probe', '--model', GPT2, '--examples', '60', '--epochs', '1', '--layers', '0,-1', '--out', join(cache, 'probe'), '--json']);
    expect(r.code, r.err).toBe(0);
    const res = JSON.parse(r.out.trim().split('\n').at(-1)!) as { model: string; numLayers: number };
    expect(res).toMatchObject({ model: GPT2, numLayers: 4 });
    expect(hub.take()).toEqual([]);
  });

  it('--offline with an empty cache is one line and a hint; export ORG/NAME fetches the config and tokenizer only', async () => {
    let r = await cli(['probe', '--model', GPT2, '--offline']);
    expect(r.code).toBe(1);
    const lines = r.err.trim().split('\n');
    expect(lines[0]).toMatch(/^transformer-heads: offline mode \(HF_HUB_OFFLINE or --offline\): 'th-test\/tiny-gpt2' is not a local path, and revision 'main' of 'th-test\/tiny-gpt2' is not in the cache/);
    expect(lines[1]).toMatch(/^hint: download it once while online \('transformer-heads download th-test\/tiny-gpt2'\)/);
    expect(hub.take()).toEqual([]);
    r = await cli(['export', GPT2, '--json']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out.trim().split('\n').at(-1)!)).toMatchObject({ modelType: 'gpt2', numLayers: 4, hiddenSize: 64, parameters: null, tokenizer: { present: true } });
    expect(hub.take().filter((q) => q.method === 'GET' && q.path.includes('/resolve/')).map((q) => q.path.split('/').pop()).sort()).toEqual(['config.json', 'tokenizer.json', 'tokenizer_config.json']);
  });
});

// huggingface_hub itself, when it can be imported (TH_HF_HUB_PYTHONPATH may point at its source): Python downloads
// from the fake Hub and this library loads that cache offline; this library downloads and Python finds every file,
// offline and online (with HEAD requests only, no download).
const hfHubPath = process.env.TH_HF_HUB_PYTHONPATH ?? '';
const hasHfHub = spawnSync(python, ['-c', 'import huggingface_hub'], { env: { ...process.env, PYTHONPATH: hfHubPath } }).status === 0;
describe.skipIf(!hasHfHub)('with Python huggingface_hub', () => {
  it('each reads what the other wrote', async () => {
    const env = { PYTHONPATH: hfHubPath, HF_HUB_DISABLE_TELEMETRY: '1' };
    let r = await py(['-c', `import json; from huggingface_hub import snapshot_download; print(json.dumps(snapshot_download('${LLAMA}')))`], env);
    expect(r.code, r.err).toBe(0);
    const pySnap = JSON.parse(r.out.trim().split('\n').at(-1)!) as string;
    hub.take();
    const m = await loadBackbone(LLAMA, { offline: true });
    expect(m.path).toBe(pySnap);
    const direct = await loadBackbone(fixture('hf-tiny-llama'));
    await expectSame(m, direct);

    await resolveModel(GPT2);
    const code = `import json
from huggingface_hub import snapshot_download, hf_hub_download, try_to_load_from_cache, _CACHED_NO_EXIST
p = snapshot_download('${GPT2}', local_files_only=True)
w = hf_hub_download('${GPT2}', 'model.safetensors', local_files_only=True)
g = try_to_load_from_cache('${GPT2}', 'generation_config.json')
print(json.dumps({'snapshot': p, 'weights': w, 'absent': g is _CACHED_NO_EXIST}))`;
    r = await py(['-c', code], { ...env, HF_HUB_OFFLINE: '1' });
    expect(r.code, r.err).toBe(0);
    const snap = join(repoDir(GPT2), 'snapshots', hub.commit(GPT2));
    expect(JSON.parse(r.out.trim().split('\n').at(-1)!)).toEqual({ snapshot: snap, weights: join(snap, 'model.safetensors'), absent: true });
    hub.take();
    r = await py(['-c', `from huggingface_hub import hf_hub_download; print(hf_hub_download('${GPT2}', 'model.safetensors'))`], env);
    expect(r.code, r.err).toBe(0);
    expect(hub.take().map((q) => q.method)).toEqual(['HEAD']);
    m.dispose();
    direct.dispose();
  });
});
