// HTTP for the Hub over node:http / node:https (no dependency): requests with timeouts and abort, the metadata HEAD
// of huggingface_hub's get_hf_file_metadata (relative redirects followed, CDN redirects read but not followed), the
// model-info API, and the Hub's error responses turned into errors a user can act on.
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

import { TransformerHeadsError } from '../../errors.js';

// Keep-alive: a model is a handful of requests to one host (HEADs, then the downloads).
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16 });

let userAgent = 'transformer-heads';
/** @internal set once by the package entry (name/version) */
export function setUserAgent(ua: string): void {
  userAgent = ua;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Idle time (no byte sent or received) before the request fails with ETIMEDOUT. */
  timeoutMs: number;
}

export function abortedError(signal: AbortSignal | undefined, what: string): TransformerHeadsError {
  return new TransformerHeadsError(`${what} was aborted`, 'ERR_TH_ABORTED', { cause: signal?.reason });
}

/** One request; resolves with the response (body not read) whatever its status. */
export function request(method: 'GET' | 'HEAD', url: string, o: RequestOptions): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(abortedError(o.signal, `${method} ${url}`));
    let u: URL;
    try {
      u = new URL(url);
    } catch (e) {
      return reject(new TransformerHeadsError(`'${url}' is not a valid URL (check HF_ENDPOINT)`, 'ERR_TH_NETWORK', { cause: e }));
    }
    const https = u.protocol === 'https:';
    if (!https && u.protocol !== 'http:') return reject(new TransformerHeadsError(`'${url}': only http and https URLs are supported`, 'ERR_TH_NETWORK'));
    const req = (https ? httpsRequest : httpRequest)(u, {
      method,
      agent: https ? httpsAgent : httpAgent,
      headers: { 'user-agent': userAgent, 'accept-encoding': 'identity', ...o.headers },
    });
    const onAbort = () => req.destroy(abortedError(o.signal, `${method} ${url}`));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => o.signal?.removeEventListener('abort', onAbort);
    req.setTimeout(o.timeoutMs, () => {
      req.destroy(Object.assign(new Error(`no answer from ${u.host} in ${o.timeoutMs / 1000} s`), { code: 'ETIMEDOUT' }));
    });
    req.on('response', (res) => {
      // The response body keeps the abort and idle-timeout handling until it is read or dropped.
      res.on('close', cleanup);
      resolve(res);
    });
    req.on('error', (e) => {
      cleanup();
      reject(e);
    });
    req.end();
  });
}

/** Reads a whole (small) body. */
export async function readBody(res: IncomingMessage, limit = 64 << 20): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      res.destroy();
      throw new TransformerHeadsError(`the answer of ${res.url ?? 'the server'} is larger than ${limit} bytes`, 'ERR_TH_NETWORK');
    }
    parts.push(c);
  }
  return Buffer.concat(parts);
}

/** Drops a response body without reading it (frees the keep-alive socket). */
export function drain(res: IncomingMessage): void {
  res.resume();
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** What a Hub request was about, for error messages. */
export interface HubTarget {
  endpoint: string;
  repoId: string;
  revision: string;
  file?: string;
  /** Whether an Authorization header was sent. */
  withToken: boolean;
}

/** Node's transport errors (refused, reset, timed out, DNS) as one ERR_TH_NETWORK error. */
export function networkError(e: unknown, t: HubTarget, doing: string): TransformerHeadsError {
  if (e instanceof TransformerHeadsError) return e;
  const err = e as NodeJS.ErrnoException;
  return new TransformerHeadsError(
    `could not reach the Hub at ${t.endpoint} while ${doing} (${err.code ?? ''}${err.code ? ': ' : ''}${err.message})\n` +
      'check the connection (and HF_ENDPOINT); models already in the cache load with HF_HUB_OFFLINE=1 or --offline',
    'ERR_TH_NETWORK',
    { cause: e },
  );
}

/**
 * The Hub's answer to a failed request as an error, following huggingface_hub's hf_raise_for_status: the
 * X-Error-Code header (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) first, then the status.
 */
export function hubError(res: IncomingMessage, t: HubTarget): TransformerHeadsError {
  const status = res.statusCode ?? 0;
  const code = header(res.headers, 'x-error-code');
  const serverMessage = header(res.headers, 'x-error-message');
  const page = `${t.endpoint}/${t.repoId}`;
  const at = t.revision === 'main' ? '' : ` at revision '${t.revision}'`;
  const said = serverMessage ? ` (the Hub says: ${serverMessage})` : '';
  if (code === 'GatedRepo') {
    return t.withToken
      ? new TransformerHeadsError(
          `'${t.repoId}' is a gated model and your token has no access to it yet${said}\naccept its license on ${page} (access may need the authors' approval), with the account of your token`,
          'ERR_TH_HUB_AUTH',
        )
      : new TransformerHeadsError(
          `'${t.repoId}' is a gated model: downloading it needs a token of an account that accepted its license${said}\naccept the license on ${page}, then set HF_TOKEN to a token of that account (or run 'huggingface-cli login')`,
          'ERR_TH_HUB_AUTH',
        );
  }
  if (code === 'RevisionNotFound') {
    return new TransformerHeadsError(`'${t.repoId}' has no revision '${t.revision}'${said}\nuse a branch, a tag or a commit hash listed on ${page}/tree/main`, 'ERR_TH_HUB_NOT_FOUND');
  }
  if (code === 'EntryNotFound') {
    return new TransformerHeadsError(`'${t.repoId}'${at} has no file '${t.file ?? '?'}'${said}\nsee the files on ${page}/tree/${encodeURIComponent(t.revision)}`, 'ERR_TH_HUB_NOT_FOUND');
  }
  if (status === 401 && serverMessage === 'Invalid credentials in Authorization header') {
    return new TransformerHeadsError(`the Hub refused the token (HF_TOKEN or the token file): it is invalid or expired\nmake a new token on ${t.endpoint}/settings/tokens and set HF_TOKEN to it`, 'ERR_TH_HUB_AUTH');
  }
  if (code === 'RepoNotFound' || status === 401 || status === 404) {
    return new TransformerHeadsError(
      `no model '${t.repoId}' on ${t.endpoint}${said}\ncheck the id (it is 'organisation/name', as in the model page's address)${t.withToken ? '; if it is private, your token has no access to it' : '; if it is private, set HF_TOKEN to a token that can read it'}`,
      'ERR_TH_HUB_NOT_FOUND',
    );
  }
  if (status === 403) {
    return new TransformerHeadsError(`the Hub forbids access to '${t.repoId}'${said}\ncheck that your token (HF_TOKEN) has read access to it`, 'ERR_TH_HUB_AUTH');
  }
  if (status === 429) {
    return new TransformerHeadsError(`the Hub is rate-limiting requests (429)${said}\nwait a few minutes and retry; logged-in requests (HF_TOKEN) get higher limits`, 'ERR_TH_NETWORK');
  }
  return new TransformerHeadsError(`the Hub answered ${status} ${res.statusMessage ?? ''} for '${t.repoId}'${t.file ? ` file '${t.file}'` : ''}${said}\nretry later; models already in the cache load with HF_HUB_OFFLINE=1`, 'ERR_TH_NETWORK');
}

/** Whether a failed response is worth retrying (rate limit, server error), as huggingface_hub's backoff does. */
export function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** What the resolve endpoint says about one file. */
export interface FileMetadata {
  /** The commit the file was resolved at (X-Repo-Commit). */
  commit: string;
  /** X-Linked-Etag (LFS files: the sha256) or ETag (git files: the git blob sha1), without quotes or W/. */
  etag: string;
  size: number;
  /** Where to GET the bytes: the CDN address of a redirect, else the resolve address. */
  location: string;
}

/** huggingface_hub's _normalize_etag. */
export function normalizeEtag(etag: string | undefined): string | undefined {
  return etag?.replace(/^W\//, '').replace(/^"+|"+$/g, '');
}

/**
 * HEAD {endpoint}/{repo}/resolve/{revision}/{file}: relative redirects (a renamed repository) are followed, an
 * absolute one (the CDN of a large file) is not: its headers carry the file's metadata and its Location is where
 * the bytes are. Null when the file does not exist at that revision (EntryNotFound), with the commit if the Hub said.
 */
export async function fileMetadata(url: string, t: HubTarget, o: RequestOptions): Promise<FileMetadata | { missing: true; commit: string | null }> {
  let current = url;
  for (let hops = 0; ; hops++) {
    let res: IncomingMessage;
    try {
      res = await request('HEAD', current, o);
    } catch (e) {
      throw networkError(e, t, `asking for '${t.file}'`);
    }
    drain(res);
    const status = res.statusCode ?? 0;
    const location = header(res.headers, 'location');
    if (status >= 300 && status < 400 && location) {
      const target = new URL(location, current);
      if (/^[a-z][a-z0-9+.-]*:/i.test(location) === false && !location.startsWith('//') && hops < 10) {
        // relative: huggingface_hub keeps the host and query and takes the new path
        const next = new URL(current);
        next.pathname = target.pathname;
        current = next.toString();
        continue;
      }
      return metadataFrom(res, target.toString(), t, true);
    }
    if (status >= 400) {
      if (header(res.headers, 'x-error-code') === 'EntryNotFound') return { missing: true, commit: header(res.headers, 'x-repo-commit') ?? null };
      throw hubError(res, t);
    }
    return metadataFrom(res, current, t, false);
  }
}

function metadataFrom(res: IncomingMessage, location: string, t: HubTarget, redirect: boolean): FileMetadata {
  const commit = header(res.headers, 'x-repo-commit');
  const etag = normalizeEtag(header(res.headers, 'x-linked-etag') ?? header(res.headers, 'etag'));
  const sizeText = header(res.headers, 'x-linked-size') ?? (redirect ? undefined : header(res.headers, 'content-length'));
  const size = sizeText !== undefined && /^\d+$/.test(sizeText) ? Number(sizeText) : NaN;
  const problem = !commit
    ? 'no X-Repo-Commit header: the server does not look like a Hugging Face Hub (a proxy or firewall page?)'
    : !etag
      ? 'no ETag: the file cannot be checked'
      : !Number.isSafeInteger(size)
        ? 'no size (Content-Length)'
        : null;
  if (problem) throw new TransformerHeadsError(`${t.endpoint}: '${t.repoId}' file '${t.file}': ${problem}\ncheck HF_ENDPOINT and any proxy between you and the Hub`, 'ERR_TH_NETWORK');
  return { commit: commit!, etag: etag!, size, location };
}

/** GET {endpoint}/api/models/{repo}/revision/{revision}: the commit and the file list (null when not listed). */
export async function modelInfo(endpoint: string, t: HubTarget, o: RequestOptions): Promise<{ sha: string; files: string[] | null }> {
  let url = `${endpoint}/api/models/${t.repoId}/revision/${encodeURIComponent(t.revision)}`;
  let res: IncomingMessage;
  let body: Buffer;
  try {
    for (let hops = 0; ; hops++) {
      res = await request('GET', url, o);
      const loc = res.headers.location;
      const status = res.statusCode ?? 0;
      // a renamed repository: the Hub redirects within itself
      if (status >= 300 && status < 400 && loc && hops < 10 && new URL(loc, url).host === new URL(url).host) {
        drain(res);
        url = new URL(loc, url).toString();
        continue;
      }
      body = await readBody(res);
      break;
    }
  } catch (e) {
    throw networkError(e, t, `asking for '${t.repoId}'`);
  }
  if ((res.statusCode ?? 0) >= 400) throw hubError(res, t);
  let info: { sha?: unknown; siblings?: Array<{ rfilename?: unknown }> };
  try {
    info = JSON.parse(body.toString('utf8'));
  } catch {
    throw new TransformerHeadsError(`${url} did not answer JSON\ncheck HF_ENDPOINT and any proxy between you and the Hub`, 'ERR_TH_NETWORK');
  }
  if (typeof info.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha)) {
    throw new TransformerHeadsError(`${url} names no commit for revision '${t.revision}'\ncheck HF_ENDPOINT`, 'ERR_TH_NETWORK');
  }
  const files = Array.isArray(info.siblings) ? info.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === 'string') : null;
  return { sha: info.sha, files };
}
