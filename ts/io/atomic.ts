import { randomBytes } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';

import { TransformerHeadsError } from '../errors.js';

/**
 * Writes `data` to `path` through a temporary file and a rename, so a crash never leaves a half-written file. An
 * array of pieces is written one after the other (by libuv, off the event loop) without being joined first.
 */
export async function atomicWrite(path: string, data: Uint8Array | string | readonly Uint8Array[]): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new TransformerHeadsError(`could not write '${path}': ${(e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
}
