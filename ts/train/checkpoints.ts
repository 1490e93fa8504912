import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { TransformerHeadsError } from '../errors.js';

/** @internal The step numbers of the checkpoint-N folders in `dir`, ascending. */
export async function checkpoints(dir: string): Promise<number[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .map((n) => /^checkpoint-(\d+)$/.exec(n)?.[1])
    .filter((s): s is string => s !== undefined)
    .map(Number)
    .sort((x, y) => x - y);
}

/** @internal The latest checkpoint folder in `dir` (resumeFromCheckpoint: true). */
export async function latestCheckpoint(dir: string): Promise<string> {
  const all = await checkpoints(dir);
  if (all.length === 0) throw new TransformerHeadsError(`no checkpoint-N folder in '${dir}' to resume from`, 'ERR_TH_FILE');
  return join(dir, `checkpoint-${all.at(-1)}`);
}
