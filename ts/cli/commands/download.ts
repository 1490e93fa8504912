// transformer-heads download: fetches a Hub model into the Hugging Face cache (shared with Python) and prints where.
import { resolve } from 'node:path';

import { downloadModel, hubCacheDir, parseRepoRef, type HubFiles } from '../../io/index.js';
import { formatBytes } from '../../report/index.js';
import { BIN, strFlag, usageError, type Command } from '../args.js';
import { hubProgress } from '../hub.js';
import { TransformerHeadsError } from '../../errors.js';

const KINDS: HubFiles[] = ['model', 'config', 'tokenizer', 'heads'];

export const DOWNLOAD: Command = {
  summary: 'download a model from the Hugging Face Hub into the cache and print where it went',
  usage: `${BIN} download ORG/NAME[@REVISION] [--revision REV] [--files model|config|tokenizer|heads] [--cache-dir DIR] [--json]`,
  options: { revision: { type: 'string' }, files: { type: 'string' }, 'cache-dir': { type: 'string' } },
  help: `Fetches the files of a Hub model that this library reads (config.json, model.safetensors or the sharded index
and its shards, tokenizer.json, tokenizer_config.json, generation_config.json; never pickle weights) into the
Hugging Face cache, the one Python's huggingface_hub and transformers use, and prints the snapshot folder. Files
already there are not fetched again; an interrupted download resumes; every file is checked against its size and
sha256 (or git sha1) before it enters the cache. Any --model option (and the library's loaders) also takes
ORG/NAME and downloads on first use; this command is for fetching ahead, and it always asks the Hub for the
revision's latest commit.
  ORG/NAME[@REV]      the model id as in its Hub address, optionally with a branch, tag or commit
  --revision REV      the same as @REV (default: main)
  --files WHAT        model (default), config, tokenizer, or heads (a folder saved by HeadedModel.save(): head
                      files and a LoRA adapter)
  --cache-dir DIR     the cache (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub;
                      now ${hubCacheDir()})
Environment: HF_TOKEN (gated and private models; else the token file of 'huggingface-cli login'), HF_ENDPOINT
(a mirror), HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE.
With --json: progress lines {"event": "start" | "progress" | "file" | "done", ...} and a last line with the
repo, revision, commit, path, files and bytes.`,
  async run(v, pos, ui) {
    if (pos.length !== 1) usageError('download needs one model id, e.g. openai-community/gpt2', 'download');
    const id = pos[0]!;
    const ref = parseRepoRef(id);
    if (!ref) usageError(`'${id}' is not a Hub model id: expected ORG/NAME or ORG/NAME@REVISION (as in https://huggingface.co/ORG/NAME)`, 'download');
    const files = strFlag(v, 'files') ?? 'model';
    if (!KINDS.includes(files as HubFiles)) usageError(`--files: expected ${KINDS.join(', ')}, got '${files}'`, 'download');
    const rev = strFlag(v, 'revision');
    if (rev && ref.revision && rev !== ref.revision) usageError(`two revisions: '@${ref.revision}' and --revision ${rev}`, 'download');
    const cacheDir = strFlag(v, 'cache-dir');
    const ac = new AbortController();
    const onSigint = () => {
      if (ac.signal.aborted) process.exit(130);
      ui.log('interrupted: the partial file stays in the cache; run the command again to resume');
      ac.abort();
    };
    process.on('SIGINT', onSigint);
    const t0 = performance.now();
    try {
      const r = await downloadModel(ref.repoId, {
        files: files as HubFiles,
        ...(rev ?? ref.revision ? { revision: (rev ?? ref.revision)! } : {}),
        ...(cacheDir ? { cacheDir: resolve(cacheDir) } : {}),
        onProgress: hubProgress(ui, true),
        signal: ac.signal,
      });
      const seconds = Number(((performance.now() - t0) / 1000).toFixed(2));
      ui.log(
        r.fromCache
          ? `${r.repoId}: from the cache (the Hub was not asked: offline or unreachable)`
          : r.downloaded.length
            ? `${r.repoId}: ${r.downloaded.length} file${r.downloaded.length > 1 ? 's' : ''}, ${formatBytes(r.bytesDownloaded)} in ${seconds} s`
            : `${r.repoId}: up to date (commit ${r.commit.slice(0, 12)})`,
      );
      ui.emit({ command: 'download', ...r, seconds });
      ui.print(r.path);
      return 0;
    } catch (e) {
      if (e instanceof TransformerHeadsError && e.code === 'ERR_TH_ABORTED') return 130;
      throw e;
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
