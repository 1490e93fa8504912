// A fake Hugging Face Hub on 127.0.0.1 for tests and benchmarks: the resolve endpoint as the Hub answers it (git
// files: 200 with ETag = git blob sha1; LFS files: 302 to a CDN on another port with X-Linked-Etag = sha256 and
// X-Linked-Size; X-Repo-Commit everywhere; Range requests; X-Error-Code on errors: RepoNotFound with 401 without a
// token, RevisionNotFound, EntryNotFound, GatedRepo with 401 / 403), the model-info API
// (/api/models/{repo}/revision/{rev} -> sha, siblings), a renamed repository answered with a relative redirect, and
// faults to inject: a connection dropped after N bytes, a corrupted byte, a wrong announced size, a slow CDN.
// Every request is logged so that tests can assert what was (not) asked.
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/** A file's bytes: in memory, or a file on disk (large benchmark files). */
export type Content = Buffer | { path: string };

export interface FakeCommit {
  files: Record<string, Content>;
  /** Branches and tags naming this commit (the last commit is 'main' unless another names it). */
  refs?: string[];
}

export interface FakeRepo {
  commits: FakeCommit[];
  /** Needs Authorization: Bearer <acceptedToken> (401 without a token, 403 with another one). */
  gated?: boolean;
}

export interface LoggedRequest {
  method: string;
  server: 'hub' | 'cdn';
  path: string;
  range: string | null;
  auth: string | null;
}

export interface Faults {
  /** file name -> drop the connection after this many bytes of the body, once. */
  dropAfter: Map<string, number>;
  /** Files served with one byte flipped (headers unchanged). */
  corrupt: Set<string>;
  /** file name -> bytes added to the announced size (X-Linked-Size / Content-Length of the HEAD). */
  sizeSkew: Map<string, number>;
  /** CDN bytes per second (0 = unlimited). */
  cdnBytesPerSecond: number;
}

interface StoredFile {
  name: string;
  content: Content;
  size: number;
  sha256: string;
  gitSha1: string;
  lfs: boolean;
}

interface StoredCommit {
  sha: string;
  files: Map<string, StoredFile>;
}

interface StoredRepo {
  commits: Map<string, StoredCommit>;
  refs: Map<string, string>;
  gated: boolean;
}

const LFS_RE = /\.(safetensors|bin|pt|pth|gguf|onnx)$/;

function read(content: Content, start = 0, end?: number): Buffer {
  const buf = Buffer.isBuffer(content) ? content : readFileSync(content.path);
  return buf.subarray(start, end);
}

function hashes(content: Content): { size: number; sha256: string; gitSha1: string } {
  const size = Buffer.isBuffer(content) ? content.length : statSync(content.path).size;
  const sha = createHash('sha256');
  const git = createHash('sha1').update(`blob ${size}\0`);
  if (Buffer.isBuffer(content)) {
    sha.update(content);
    git.update(content);
  } else {
    // large benchmark files: hashed in pieces, never whole in memory
    const fd = openSync(content.path, 'r');
    const buf = Buffer.alloc(8 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) {
      sha.update(buf.subarray(0, n));
      git.update(buf.subarray(0, n));
    }
    closeSync(fd);
  }
  return { size, sha256: sha.digest('hex'), gitSha1: git.digest('hex') };
}

/** A repository commit made of the files of a folder (the test fixtures). */
export function folderFiles(dir: string, only?: string[]): Record<string, Content> {
  const out: Record<string, Content> = {};
  for (const f of readdirSync(dir)) if (!only || only.includes(f)) out[f] = readFileSync(join(dir, f));
  return out;
}

export class FakeHub {
  readonly requests: LoggedRequest[] = [];
  readonly faults: Faults = { dropAfter: new Map(), corrupt: new Set(), sizeSkew: new Map(), cdnBytesPerSecond: 0 };
  readonly acceptedToken = 'hf_test_accepted';
  /** Old id -> new id, answered with relative redirects. */
  readonly renamed = new Map<string, string>();
  #repos = new Map<string, StoredRepo>();
  #hub: Server;
  #cdn: Server;
  #blobs = new Map<string, StoredFile>();
  endpoint = '';
  cdnOrigin = '';

  constructor(repos: Record<string, FakeRepo>) {
    let n = 0;
    for (const [id, r] of Object.entries(repos)) {
      const stored: StoredRepo = { commits: new Map(), refs: new Map(), gated: r.gated ?? false };
      r.commits.forEach((c, i) => {
        const sha = createHash('sha1').update(`${id}:${i}:${n++}`).digest('hex');
        const files = new Map<string, StoredFile>();
        for (const [name, content] of Object.entries(c.files)) {
          const h = hashes(content);
          const f: StoredFile = { name, content, ...h, lfs: LFS_RE.test(name) };
          files.set(name, f);
          if (f.lfs) this.#blobs.set(f.sha256, f);
        }
        stored.commits.set(sha, { sha, files });
        for (const ref of c.refs ?? []) stored.refs.set(ref, sha);
        if (i === r.commits.length - 1 && !stored.refs.has('main')) stored.refs.set('main', sha);
      });
      this.#repos.set(id, stored);
    }
    this.#hub = createServer((req, res) => this.#onHub(req, res));
    this.#cdn = createServer((req, res) => this.#onCdn(req, res));
  }

  async start(): Promise<this> {
    const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
    this.endpoint = `http://127.0.0.1:${await listen(this.#hub)}`;
    this.cdnOrigin = `http://127.0.0.1:${await listen(this.#cdn)}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of [this.#hub, this.#cdn]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  /** The commit a ref names. */
  commit(repoId: string, ref = 'main'): string {
    const r = this.#repos.get(repoId)!;
    return r.refs.get(ref) ?? ref;
  }

  /** sha256 / git sha1 / size of a served file. */
  file(repoId: string, name: string, ref = 'main'): StoredFile {
    return this.#repos.get(repoId)!.commits.get(this.commit(repoId, ref))!.files.get(name)!;
  }

  /** Requests since the log was last cleared, then clears it. */
  take(): LoggedRequest[] {
    return this.requests.splice(0);
  }

  #log(req: IncomingMessage, server: 'hub' | 'cdn'): void {
    this.requests.push({ method: req.method ?? '', server, path: req.url ?? '', range: req.headers.range ?? null, auth: req.headers.authorization ?? null });
  }

  #error(res: ServerResponse, status: number, code: string | null, message: string, extra: Record<string, string> = {}): void {
    res.writeHead(status, { ...(code ? { 'x-error-code': code } : {}), 'x-error-message': message, 'content-type': 'application/json', ...extra });
    res.end(JSON.stringify({ error: message }));
  }

  /** The repo and commit a request names, or an error answer already sent. */
  #lookup(req: IncomingMessage, res: ServerResponse, repoId: string, rev: string): { repo: StoredRepo; commit: StoredCommit } | null {
    const repo = this.#repos.get(repoId);
    const auth = req.headers.authorization ?? null;
    if (!repo) {
      if (auth) this.#error(res, 404, 'RepoNotFound', 'Repository not found');
      else this.#error(res, 401, 'RepoNotFound', 'Invalid username or password.');
      return null;
    }
    const sha = repo.refs.get(rev) ?? rev;
    const commit = repo.commits.get(sha);
    if (!commit) {
      this.#error(res, 404, 'RevisionNotFound', 'Invalid rev id: ' + rev);
      return null;
    }
    return { repo, commit };
  }

  #onHub(req: IncomingMessage, res: ServerResponse): void {
    this.#log(req, 'hub');
    const url = new URL(req.url ?? '/', this.endpoint);
    const parts = url.pathname.split('/').slice(1);
    if (parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'revision') {
      const id = `${parts[2]}/${parts[3]}`;
      if (this.renamed.has(id)) {
        res.writeHead(307, { location: `/api/models/${this.renamed.get(id)}/revision/${parts.slice(5).join('/')}` });
        return void res.end();
      }
      const found = this.#lookup(req, res, id, decodeURIComponent(parts.slice(5).join('/')));
      if (!found) return;
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ id, modelId: id, sha: found.commit.sha, gated: found.repo.gated ? 'manual' : false, siblings: [...found.commit.files.keys()].map((rfilename) => ({ rfilename })) }));
    }
    if (parts[2] !== 'resolve' || parts.length < 5) return this.#error(res, 404, null, 'Not found');
    const id = `${parts[0]}/${parts[1]}`;
    if (this.renamed.has(id)) {
      res.writeHead(307, { location: `/${this.renamed.get(id)}/${parts.slice(2).join('/')}` });
      return void res.end();
    }
    const rev = decodeURIComponent(parts[3]!);
    const name = parts.slice(4).map(decodeURIComponent).join('/');
    const found = this.#lookup(req, res, id, rev);
    if (!found) return;
    const { repo, commit } = found;
    if (repo.gated) {
      const auth = req.headers.authorization;
      if (!auth) return this.#error(res, 401, 'GatedRepo', `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      if (auth !== `Bearer ${this.acceptedToken}`) return this.#error(res, 403, 'GatedRepo', `Access to model ${id} is restricted and you are not in the authorized list. Visit ${this.endpoint}/${id} to ask for access.`);
    }
    const f = commit.files.get(name);
    if (!f) return this.#error(res, 404, 'EntryNotFound', `${name} does not exist on "${rev}"`, { 'x-repo-commit': commit.sha });
    const announced = f.size + (this.faults.sizeSkew.get(name) ?? 0);
    if (f.lfs) {
      // what the Hub does for LFS files: metadata in headers, bytes on a (signed) CDN address
      const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${f.size}\n`;
      res.writeHead(302, {
        location: `${this.cdnOrigin}/blobs/${f.sha256}?x-signature=${createHash('md5').update(f.sha256).digest('hex')}`,
        'x-repo-commit': commit.sha,
        'x-linked-etag': `"${f.sha256}"`,
        'x-linked-size': String(announced),
        etag: `"${createHash('sha1').update(`blob ${pointer.length}\0${pointer}`).digest('hex')}"`,
        'content-length': '0',
      });
      return void res.end();
    }
    const headers = { 'x-repo-commit': commit.sha, etag: `"${f.gitSha1}"`, 'accept-ranges': 'bytes' };
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...headers, 'content-length': String(announced) });
      return void res.end();
    }
    this.#serve(req, res, f, headers, 0);
  }

  #onCdn(req: IncomingMessage, res: ServerResponse): void {
    this.#log(req, 'cdn');
    const m = /^\/blobs\/([0-9a-f]{64})/.exec(req.url ?? '');
    const f = m ? this.#blobs.get(m[1]!) : undefined;
    if (!f) {
      res.writeHead(404);
      return void res.end();
    }
    this.#serve(req, res, f, { 'accept-ranges': 'bytes', etag: `"${f.sha256}"` }, this.faults.cdnBytesPerSecond);
  }

  /** Sends a file (or the Range asked), with the faults that apply to it. */
  #serve(req: IncomingMessage, res: ServerResponse, f: StoredFile, headers: Record<string, string>, bytesPerSecond: number): void {
    let start = 0;
    let end = f.size; // exclusive
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (req.headers.range) {
      if (!range || Number(range[1]) >= f.size) {
        res.writeHead(416, { 'content-range': `bytes */${f.size}` });
        return void res.end();
      }
      start = Number(range[1]);
      if (range[2]) end = Math.min(f.size, Number(range[2]) + 1);
      status = 206;
      headers = { ...headers, 'content-range': `bytes ${start}-${end - 1}/${f.size}` };
    }
    res.writeHead(status, { ...headers, 'content-length': String(end - start), 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') return void res.end();
    const drop = this.faults.dropAfter.get(f.name);
    if (drop !== undefined) this.faults.dropAfter.delete(f.name);
    const corrupt = this.faults.corrupt.has(f.name);
    if (!corrupt && drop === undefined && bytesPerSecond === 0 && !Buffer.isBuffer(f.content)) {
      // the benchmark path: stream from disk
      createReadStream(f.content.path, { start, end: end - 1, highWaterMark: 1 << 20 }).pipe(res);
      return;
    }
    let body = read(f.content, start, end);
    if (corrupt) {
      body = Buffer.from(body);
      body[Math.floor(body.length / 2)]! ^= 0xff;
    }
    if (drop !== undefined) {
      // end(), not destroy(): a reset can reach the client before the bytes already sent and make it discard them
      // (seen under load: the resume then started at 0); a close after the bytes is the same dropped connection.
      res.write(body.subarray(0, Math.max(0, drop - start)), () => res.socket?.end());
      return;
    }
    if (bytesPerSecond === 0) return void res.end(body);
    const chunk = Math.max(1024, Math.floor(bytesPerSecond / 20)); // 20 writes a second
    let at = 0;
    const tick = () => {
      if (res.destroyed) return;
      const piece = body.subarray(at, at + chunk);
      at += piece.length;
      if (at >= body.length) return void res.end(piece);
      res.write(piece);
      setTimeout(tick, 50);
    };
    tick();
  }
}
