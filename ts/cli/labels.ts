// Turning jsonl / csv rows into tokenized examples with one label column per head target: what each head's labels
// look like, class names for string labels, and the collator's pad values.
import type { Tokenizer } from '../io/index.js';
import type { ResolvedHeadConfig } from '../model/index.js';
import type { Example } from '../train/index.js';
import { configError, show } from './config.js';
import { CliError } from './ui.js';

/** How a head's labels look in the data. */
export type LabelKind = 'class' | 'class-token' | 'causal' | 'value' | 'value-token' | 'none';

export function labelKind(h: ResolvedHeadConfig): LabelKind {
  if (h.lossFct === null) return 'none';
  if (h.isCausalLm) return 'causal';
  if (h.lossFct === 'cross_entropy') return h.predForSequence ? 'class' : 'class-token';
  return h.predForSequence ? 'value' : 'value-token';
}

export interface Labelling {
  heads: readonly ResolvedHeadConfig[];
  textColumn: string;
  labelColumns: Record<string, string>;
  maxLength: number;
  /** Target -> class names in index order, for class labels given as strings. */
  labelMaps: Record<string, string[]>;
}

function columnFor(target: string, l: Pick<Labelling, 'labelColumns'>): string {
  return l.labelColumns[target] ?? target;
}

/** The targets the data must carry (causal-LM heads read input_ids), with the head that needs each. */
function labelTargets(heads: readonly ResolvedHeadConfig[]): Map<string, ResolvedHeadConfig> {
  const out = new Map<string, ResolvedHeadConfig>();
  for (const h of heads) if (labelKind(h) !== 'none' && !out.has(h.target)) out.set(h.target, h);
  return out;
}

/**
 * Class names for sequence-classification targets whose labels are strings (sorted, so the same data always
 * gives the same indices); integer labels are used as they are and must be below numOutputs.
 */
export function buildLabelMaps(
  sets: ReadonlyArray<{ rows: readonly Example[]; where: string }>,
  heads: readonly ResolvedHeadConfig[],
  labelColumns: Record<string, string>,
  existing: Record<string, string[]> = {},
): Record<string, string[]> {
  const maps: Record<string, string[]> = { ...existing };
  for (const [target, h] of labelTargets(heads)) {
    if (labelKind(h) !== 'class' || maps[target]) continue;
    const col = columnFor(target, { labelColumns });
    const values = new Set<string>();
    let strings = false;
    for (const { rows } of sets) {
      for (const r of rows) {
        const v = r[col];
        if (typeof v === 'string') strings = true;
        if (typeof v === 'string' || typeof v === 'number') values.add(String(v));
      }
    }
    if (!strings) continue;
    const classes = [...values].sort();
    const idx = heads.findIndex((x) => x.target === target);
    const maxOut = Math.min(...heads.filter((x) => x.target === target).map((x) => x.numOutputs ?? Infinity));
    if (classes.length > maxOut) {
      configError(`config.heads[${idx}].numOutputs`, `column '${col}' has ${classes.length} classes (${classes.slice(0, 8).join(', ')}${classes.length > 8 ? ', ...' : ''}) but numOutputs is ${maxOut}`);
    }
    maps[target] = classes;
  }
  return maps;
}

function numberArray(v: unknown): number[] | null {
  if (!Array.isArray(v)) return null;
  return v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : null;
}

/**
 * Turns data rows into examples: input_ids (tokenized from the text column, or the row's own input_ids) cut to
 * maxLength, attention_mask, and one label column per head target. Errors name the file, the row and the column.
 */
export function prepareExamples(
  rows: readonly Example[],
  where: string,
  l: Labelling,
  tokenizer: Tokenizer | null,
  options: { labels?: boolean } = {},
): Example[] {
  const withLabels = options.labels ?? true;
  const targets = labelTargets(l.heads);
  const colsOf = (r: Example) => Object.keys(r).join(', ') || 'none';
  const hint = 'set data.textColumn / data.labelColumns in the config (or --text) to the columns your file has';
  return rows.map((r, i) => {
    const at = `${where} row ${i + 1}`;
    let ids: number[];
    const own = numberArray(r.input_ids);
    if (own) ids = own;
    else {
      const text = r[l.textColumn];
      if (typeof text !== 'string') {
        throw new CliError(`${at}: no text column '${l.textColumn}' (a string) and no input_ids; the row has: ${colsOf(r)}`, hint, 2);
      }
      if (!tokenizer) throw new CliError(`${at}: the model carries no tokenizer to encode '${l.textColumn}'`, 'set data.tokenizer to a folder with tokenizer.json, or give input_ids in the data', 2);
      ids = tokenizer.encode(text).ids;
    }
    ids = ids.slice(0, l.maxLength);
    if (ids.length === 0) throw new CliError(`${at}: the text encodes to no tokens`, 'remove empty texts from the data', 2);
    const ex: Example = { input_ids: ids, attention_mask: ids.map(() => 1) };
    if (!withLabels) return ex;
    for (const [target, h] of targets) {
      const kind = labelKind(h);
      const col = columnFor(target, l);
      const v = r[col];
      if (kind === 'causal') {
        const arr = v === undefined ? ids : numberArray(v);
        if (!arr) throw new CliError(`${at}: column '${col}' for causal-LM head '${h.name}' must be token ids (or absent: then input_ids are the labels)`, hint, 2);
        ex[target] = arr.slice(0, ids.length);
        continue;
      }
      if (v === undefined || v === null) {
        throw new CliError(`${at}: no label column '${col}' for head '${h.name}'; the row has: ${colsOf(r)}`, hint, 2);
      }
      if (kind === 'class') {
        const map = l.labelMaps[target];
        if (map) {
          const k = map.indexOf(String(v));
          if (k < 0) throw new CliError(`${at}: label ${show(v)} in column '${col}' is not one of the classes the heads were trained on (${map.join(', ')})`, null, 2);
          ex[target] = k;
        } else {
          if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= h.numOutputs!) {
            throw new CliError(`${at}: label ${show(v)} in column '${col}' for head '${h.name}' must be a class index from 0 to ${h.numOutputs! - 1} (or a class name)`, null, 2);
          }
          ex[target] = v;
        }
      } else if (kind === 'value') {
        const arr = typeof v === 'number' ? [v] : numberArray(v);
        if (!arr || arr.length !== h.numOutputs) {
          throw new CliError(`${at}: column '${col}' for head '${h.name}' must hold ${h.numOutputs === 1 ? 'a number' : `${h.numOutputs} numbers`}, got ${show(v)}`, null, 2);
        }
        ex[target] = arr.length === 1 ? arr[0] : arr;
      } else {
        const arr = numberArray(v);
        if (!arr || (!own && arr.length < ids.length)) {
          throw new CliError(`${at}: column '${col}' for token-level head '${h.name}' must be an array with one label per token (give input_ids in the data so they line up)`, null, 2);
        }
        ex[target] = arr.slice(0, ids.length);
      }
    }
    return ex;
  });
}

/** The collator's pad values: input_ids -> pad id, attention_mask -> 0, token-level labels -> -100. */
export function padValues(heads: readonly ResolvedHeadConfig[], padTokenId: number): Record<string, number> {
  const pads: Record<string, number> = { input_ids: padTokenId, attention_mask: 0 };
  for (const [target, h] of labelTargets(heads)) {
    const k = labelKind(h);
    if (k === 'causal' || k === 'class-token' || k === 'value-token') pads[target] = -100;
  }
  return pads;
}
