// Where the Hugging Face cache lives and how the Hub is reached, read from the same environment variables, with the
// same defaults and precedence, as Python's huggingface_hub (constants.py, utils/_auth.py), so that both share one
// cache and one login.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);

/** huggingface_hub's `_is_true`: 1 / ON / YES / TRUE, any case. */
export function envTrue(value: string | undefined): boolean {
  return value !== undefined && TRUE_VALUES.has(value.trim().toUpperCase());
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** `~` and `$VAR` / `${VAR}` expanded, as Python's os.path.expanduser(os.path.expandvars(...)) does. */
function expand(p: string): string {
  const vars = p.replace(/\$(\w+)|\$\{(\w+)\}/g, (m, a: string | undefined, b: string | undefined) => process.env[(a ?? b)!] ?? m);
  return vars === '~' || vars.startsWith('~/') ? join(homedir(), vars.slice(1)) : vars;
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(): string {
  return resolve(expand(env('HF_HOME') ?? join(env('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface')));
}

/**
 * The Hugging Face Hub cache folder (the one Python's huggingface_hub and transformers use): HF_HUB_CACHE, else
 * the legacy HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub.
 */
export function hubCacheDir(): string {
  return resolve(expand(env('HF_HUB_CACHE') ?? env('HUGGINGFACE_HUB_CACHE') ?? join(hfHome(), 'hub')));
}

/** HF_ENDPOINT (a mirror or a self-hosted Hub), else https://huggingface.co; no trailing slash. */
export function hubEndpoint(): string {
  return (env('HF_ENDPOINT') ?? 'https://huggingface.co').replace(/\/+$/, '');
}

/** HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) set to 1 / ON / YES / TRUE. */
export function hubOffline(): boolean {
  return envTrue(env('HF_HUB_OFFLINE') ?? env('TRANSFORMERS_OFFLINE'));
}

/**
 * The user's token: HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else the file `huggingface-cli login` writes
 * (HF_TOKEN_PATH, else $HF_HOME/token). Null when there is none or HF_HUB_DISABLE_IMPLICIT_TOKEN is set.
 */
export function hubToken(): string | null {
  if (envTrue(env('HF_HUB_DISABLE_IMPLICIT_TOKEN'))) return null;
  const clean = (t: string | undefined) => {
    const s = t?.replace(/\r|\n/g, '').trim();
    return s ? s : null;
  };
  const fromEnv = clean(env('HF_TOKEN') ?? env('HUGGING_FACE_HUB_TOKEN'));
  if (fromEnv) return fromEnv;
  try {
    return clean(readFileSync(resolve(expand(env('HF_TOKEN_PATH') ?? join(hfHome(), 'token'))), 'utf8'));
  } catch {
    return null;
  }
}

/** Seconds before a metadata request (HEAD, model info) or a stalled download gives up, as huggingface_hub reads them. */
export function hubTimeouts(): { metadataMs: number; downloadMs: number } {
  const secs = (name: string, dflt: number) => {
    const n = Number(env(name));
    return Number.isFinite(n) && n > 0 ? n : dflt;
  };
  return { metadataMs: secs('HF_HUB_ETAG_TIMEOUT', 10) * 1000, downloadMs: secs('HF_HUB_DOWNLOAD_TIMEOUT', 10) * 1000 };
}
