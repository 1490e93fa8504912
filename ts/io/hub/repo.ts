// Hub repository ids: "org/name", with an optional "@revision" (a branch, a tag, a commit hash or refs/pr/N).
// The id rules are huggingface_hub's validate_repo_id; a bare "name" without an organisation is not taken as an id
// here, so that a mistyped local folder name never turns into a network request.

/** A 40-hex-digit git commit hash: a revision that needs no refs/ lookup. */
export const COMMIT_RE = /^[0-9a-f]{40}$/;

const PART = '[A-Za-z0-9_.-]{1,96}';
const ID_RE = new RegExp(`^${PART}/${PART}$`);

export interface RepoRef {
  repoId: string;
  /** The revision written after '@', or null. */
  revision: string | null;
}

/** Whether `id` is a valid "org/name" repository id (huggingface_hub's rules). */
export function isRepoId(id: string): boolean {
  if (!ID_RE.test(id) || id.includes('--') || id.includes('..') || id.endsWith('.git')) return false;
  // each part starts and ends with a letter or digit (the \b of huggingface_hub's regex)
  return id.split('/').every((p) => /^[A-Za-z0-9_].*[A-Za-z0-9_]$|^[A-Za-z0-9_]$/.test(p));
}

/** "org/name" or "org/name@revision" as a repo reference; null when the text is not shaped like one. */
export function parseRepoRef(text: string): RepoRef | null {
  const at = text.indexOf('@');
  const repoId = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? null : text.slice(at + 1);
  if (!isRepoId(repoId)) return null;
  if (revision !== null && !isRevision(revision)) return null;
  return { repoId, revision };
}

/** A git ref name as the Hub accepts it in a URL (checked so that it cannot escape refs/ or snapshots/ on disk). */
export function isRevision(rev: string): boolean {
  return rev.length > 0 && rev.length <= 256 && !/[\s\\:~^?*[\0]/.test(rev) && !rev.split('/').some((p) => p === '' || p === '.' || p === '..');
}
