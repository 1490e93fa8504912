#!/usr/bin/env node
// The Hub downloader's throughput against the fake Hub on 127.0.0.1 (test/hub-server.ts: the resolve endpoint, a
// 302 to the "CDN" port, as huggingface.co serves LFS files), next to curl fetching the same file: `curl -o
// /dev/null` (the network ceiling) and `curl -o FILE` (network + disk). The downloader writes into a fresh cache,
// hashes (sha256) as it goes and renames into blobs/; its process is fresh each run, so its peak RSS is its own.
// Runs alternate (curl, ours, curl-to-file) 3 times. TH_BENCH_DOWNLOAD_MB sets the file size (default 256).
//
//   node bench/download.mjs            one JSON line per run, then a summary line
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const self = fileURLToPath(import.meta.url);
const MB = Number(process.env.TH_BENCH_DOWNLOAD_MB ?? 256);
const REPO = 'bench/big-model';
const RUNS = 3;

/**
 * test/hub-server.ts as a module node can import, transpiled by typescript (a dev dependency, as is this benchmark)
 * into bench/out/ (kept there for machines without node_modules).
 */
async function fakeHubModule() {
  const p = join(root, 'bench', 'out', 'hub-server.mjs');
  let ts = null;
  try {
    ts = (await import('typescript')).default;
  } catch {
    /* no node_modules: use the copy in bench/out */
  }
  if (ts) {
    const src = readFileSync(join(root, 'test', 'hub-server.ts'), 'utf8');
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
  }
  return import(pathToFileURL(p).href);
}

async function server() {
  // the file: pseudo-random bytes (incompressible), written once
  const dir = mkdtempSync(join(tmpdir(), 'th-bench-hub-'));
  const file = join(dir, 'model.safetensors');
  const ws = createWriteStream(file);
  const chunk = randomBytes(8 << 20);
  for (let i = 0; i < MB / 8; i++) {
    chunk.writeUInt32LE(i, 0); // no two chunks alike
    if (!ws.write(Buffer.from(chunk))) await new Promise((r) => ws.once('drain', r));
  }
  await new Promise((r) => ws.end(r));
  const { FakeHub } = await fakeHubModule();
  const hub = await new FakeHub({
    [REPO]: { commits: [{ files: { 'config.json': Buffer.from(JSON.stringify({ model_type: 'gpt2', n_layer: 12, n_embd: 768, n_head: 12, vocab_size: 50257 })), 'model.safetensors': { path: file } } }] },
  }).start();
  const f = hub.file(REPO, 'model.safetensors');
  process.stdout.write(`${JSON.stringify({ endpoint: hub.endpoint, cdn: `${hub.cdnOrigin}/blobs/${f.sha256}`, resolve: `${hub.endpoint}/${REPO}/resolve/main/model.safetensors`, bytes: f.size, dir })}\n`);
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
}

async function client(endpoint) {
  // the downloader alone (its module needs nothing but node)
  const th = await import(pathToFileURL(join(root, 'dist', 'io', 'hub', 'index.js')).href);
  const cache = mkdtempSync(join(tmpdir(), 'th-bench-cache-'));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await th.downloadModel(REPO, { endpoint, cacheDir: cache, token: false });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  rmSync(cache, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, bytes: r.bytesDownloaded, peakRssMib: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`);
}

// CPU seconds (user + sys) next to wall time: on a shared machine the wall time says more about the neighbours.
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

function curl(url, out) {
  const args = ['-s', '-L', '-o', out, '-w', '%{time_total} %{size_download}\n', url];
  const r = TIME ? spawnSync(TIME, ['-f', 'cpu %U %S', 'curl', ...args], { encoding: 'utf8' }) : spawnSync('curl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`curl failed (${r.status}): ${r.stderr}`);
  const [t, n] = r.stdout.trim().split(' ').map(Number);
  const cpu = /cpu ([\d.]+) ([\d.]+)/.exec(r.stderr);
  return { seconds: t, bytes: n, cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : null };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mbps = (bytes, s) => Number((bytes / 1e6 / s).toFixed(1));

if (process.argv[2] === 'server') await server();
else if (process.argv[2] === 'client') await client(process.argv[3]);
else {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (existsSync(tsc)) spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  const srv = spawn(process.execPath, [self, 'server'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const info = await new Promise((res) => {
    let buf = '';
    srv.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) res(JSON.parse(buf.split('\n')[0]));
    });
  });
  const results = { curl: [], ours: [], curlFile: [] };
  const scratch = mkdtempSync(join(tmpdir(), 'th-bench-curl-'));
  for (let run = 1; run <= RUNS; run++) {
    const c = curl(info.resolve, '/dev/null');
    results.curl.push(c);
    console.log(JSON.stringify({ bench: 'download', tool: 'curl -o /dev/null', run, mb: MB, seconds: c.seconds, mb_per_s: mbps(c.bytes, c.seconds), cpu_s: c.cpuSeconds }));
    const r = await new Promise((res, rej) => {
      const p = spawn(process.execPath, [self, 'client', info.endpoint], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('close', (code) => (code === 0 ? res(JSON.parse(out.trim().split('\n').at(-1))) : rej(new Error(`client exited ${code}`))));
    });
    results.ours.push(r);
    console.log(JSON.stringify({ bench: 'download', tool: 'transformer-heads downloadModel (to cache, sha256 checked)', run, mb: MB, seconds: Number(r.seconds.toFixed(3)), mb_per_s: mbps(info.bytes, r.seconds), cpu_s: Number(r.cpuSeconds.toFixed(2)), peak_rss_mib: r.peakRssMib }));
    const f = curl(info.resolve, join(scratch, 'file'));
    results.curlFile.push(f);
    console.log(JSON.stringify({ bench: 'download', tool: 'curl -o FILE', run, mb: MB, seconds: f.seconds, mb_per_s: mbps(f.bytes, f.seconds), cpu_s: f.cpuSeconds }));
  }
  rmSync(scratch, { recursive: true, force: true });
  srv.stdin.end();
  const m = (xs) => median(xs.map((x) => mbps(info.bytes, x.seconds)));
  console.log(
    JSON.stringify({
      bench: 'download-summary',
      mb: MB,
      median_mb_per_s: { curl_dev_null: m(results.curl), ours: m(results.ours), curl_file: m(results.curlFile) },
      ours_vs_curl_file: Number((m(results.ours) / m(results.curlFile)).toFixed(2)),
      median_cpu_s: { curl_dev_null: median(results.curl.map((r) => r.cpuSeconds ?? NaN)), ours: Number(median(results.ours.map((r) => r.cpuSeconds)).toFixed(2)), curl_file: median(results.curlFile.map((r) => r.cpuSeconds ?? NaN)) },
      peak_rss_mib_ours: Math.max(...results.ours.map((r) => r.peakRssMib)),
      tmpdir: tmpdir(),
      load_average: (await import('node:os')).loadavg().map((x) => Number(x.toFixed(1))),
    }),
  );
}
