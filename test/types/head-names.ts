// Typed head names and head kinds, checked by the compiler only (test/types.test.ts compiles this file; it never
// runs). Each `// @ts-expect-error TSnnnn` line must fail to compile with that error code, and every other line must
// compile: the test fails when a misspelt name stops being an error, or when correct use stops compiling.
import {
  createHeadedQLoRA,
  DataCollatorWithPadding,
  Dataset,
  evaluateHeadWise,
  loadEmbeddedModel,
  loadHeaded,
  resolveHeadConfig,
  Trainer,
  type CausalLmHeadConfig,
  type HeadConfig,
  type HeadedModel,
  type Tensor,
} from '../../ts/index.js';

declare const tensor: Tensor;
const collator = new DataCollatorWithPadding({ input_ids: 0, attention_mask: 0 });
const data = new Dataset([{ input_ids: [1, 2], label: 1, score: 0.5 }]);

export async function typedNames(): Promise<void> {
  const model = await loadHeaded('model.pt', {
    heads: [
      { name: 'sentiment', inSize: 64, numOutputs: 2, predForSequence: true, target: 'label' },
      { name: 'score', inSize: 64, numOutputs: 1, predForSequence: true, isRegression: true, lossFct: 'mse' },
      { name: 'lm_head', inSize: 64, numOutputs: 101, isCausalLm: true },
    ],
  });

  // Outputs keyed by head name.
  const out = await model.forward({ input_ids: [[1, 2]], label: [1], score: [0.5] }, { returnPreds: true });
  const loss: number = out.lossByHead.sentiment + out.adaptedLossByHead.score + out.lossByHead.lm_head;
  // @ts-expect-error TS2551 a misspelt head name in lossByHead
  void out.lossByHead.sentimnt;
  const preds: Tensor | undefined = out.predsByHead?.get('sentiment');
  // @ts-expect-error TS2345 a misspelt head name in predsByHead
  out.predsByHead?.get('sentimnt');
  void loss;
  void preds;

  // Label columns: the heads' targets ('label') and names.
  await model.trainStep({ input_ids: [[1, 2]], attention_mask: [[1, 1]], label: [0], lm_head: [[1, 2]] });
  // @ts-expect-error TS2561 a misspelt label column
  await model.forward({ input_ids: [[1, 2]], lable: [1] });

  // Head weights by name.
  void model.headWeights('score');
  // @ts-expect-error TS2345 a head the model does not have
  void model.headGradients('scores');
  const names: Array<'sentiment' | 'score' | 'lm_head'> = model.heads.map((h) => h.name);
  void names;

  // Generation reports every head but the generating 'lm_head'.
  const gen = await model.generate('Call me', { maxNewTokens: 3 });
  const sentimentPerStep: Tensor = gen.headOutputs.sentiment;
  // @ts-expect-error TS2339 the generating head is not among the head outputs
  void gen.headOutputs.lm_head;
  // @ts-expect-error TS2551 a misspelt head name in headOutputs
  void gen.headOutputs.sentimnt;
  for await (const step of model.generateStream('Call me')) {
    const s: Tensor = step.headOutputs.score;
    // @ts-expect-error TS2551 a misspelt head name in a step's headOutputs
    void step.headOutputs.scor;
    void s;
  }
  void sentimentPerStep;

  // Trainer metrics: per head, and computeMetrics' own keys with the eval_ prefix.
  const trainer = new Trainer(model, { outputDir: 'out' }, {
    evalDataset: data,
    dataCollator: collator,
    computeMetrics: (p) => ({ top_label: p.heads.sentiment.predictions[0] ?? 0 }),
  });
  const metrics = await trainer.evaluate();
  const m: number = metrics.eval_loss + metrics.eval_sentiment_accuracy + metrics.eval_score_r2 + metrics.eval_loss_lm_head + metrics.eval_top_label;
  // @ts-expect-error TS2551 a misspelt head name in a metric key
  void metrics.eval_sentimnt_accuracy;
  // @ts-expect-error TS2551 a metric computeMetrics does not return
  void metrics.eval_top_labels;
  void m;
  new Trainer(model, { outputDir: 'out' }, {
    dataCollator: collator,
    // @ts-expect-error TS2551 computeMetrics reads a head the model does not have
    computeMetrics: (p) => ({ x: p.heads.sentimnt.labels.length }),
  });

  const byHead = await evaluateHeadWise(model, data, collator);
  // @ts-expect-error TS2551 a misspelt head name in evaluateHeadWise's losses
  void byHead.lossByHead.sentimnt;
  void byHead.lossByHead.score;
}

export async function typedFriends(): Promise<void> {
  const qlora = await createHeadedQLoRA('model.pt', {
    heads: [{ name: 'topic', inSize: 64, numOutputs: 4, predForSequence: true }],
    lora: { r: 8 },
    quantization: { bits: 4 },
  });
  await qlora.forward({ input_ids: [[1]], topic: [2] });
  // @ts-expect-error TS2561 createHeadedQLoRA types label columns too
  await qlora.forward({ input_ids: [[1]], topics: [2] });

  const embedded = await loadEmbeddedModel({ heads: [{ name: 'is_noun', inSize: 128, numOutputs: 2 }] });
  void embedded.headWeights('is_noun');
  // @ts-expect-error TS2345 loadEmbeddedModel types head names too
  void embedded.headWeights('is_verb');

  // Without an 'lm_head' the generating head is known only at run time: headOutputs keys are plain strings.
  const customLm = await loadHeaded('model.pt', {
    heads: [
      { name: 'next', inSize: 64, numOutputs: 101, isCausalLm: true },
      { name: 'tag', inSize: 64, numOutputs: 3 },
    ],
  });
  const g = await customLm.generate([1, 2]);
  const maybe: Tensor | undefined = g.headOutputs.tag;
  void maybe;
}

export async function untypedNames(heads: HeadConfig[], headFolder: string): Promise<void> {
  // Heads typed HeadConfig[] (names known only at run time) and saved heads work with any string, as before.
  const a = await loadHeaded('model.pt', { heads });
  const outA = await a.forward({ input_ids: [[1]], anything: [1] }, { returnPreds: true });
  void outA.lossByHead.whatever;
  outA.predsByHead?.get('whatever');
  void a.headWeights('any-name');
  const b = await loadHeaded('model.pt', { headFolder, extraHeads: [{ name: 'lm_head', inSize: 64, isCausalLm: true }] });
  const gen = await b.generate('x');
  const t: Tensor | undefined = gen.headOutputs.whatever;
  void t;
  const trainer = new Trainer(b, { outputDir: 'out' }, { dataCollator: collator });
  const metrics = await trainer.evaluate();
  void metrics.eval_anything;

  // A typed model is still a HeadedModel: functions written for any model accept it.
  const typed = await loadHeaded('model.pt', { heads: [{ name: 'x', inSize: 8, numOutputs: 2 }] });
  const anyModel: HeadedModel = typed;
  useModel(typed);
  void anyModel;
}

function useModel(model: HeadedModel): void {
  void model.heads.length;
}

export function headKinds(): void {
  const lm: CausalLmHeadConfig = { name: 'lm_head', inSize: 64, isCausalLm: true };
  const probe: HeadConfig = { name: 'probe', inSize: 64, numOutputs: 2, layerHook: 3, predForSequence: true };
  const token: HeadConfig = { name: 'tags', inSize: 64, numOutputs: 5, isCausalLm: false };
  const flag = Math.random() > 0.5;
  const either: HeadConfig = { name: 'either', inSize: 64, numOutputs: 5, isCausalLm: flag };
  void [lm, probe, token, either];

  // @ts-expect-error TS2322 a causal-LM head predicts at every position, not once per sequence
  const wrong: HeadConfig = { name: 'lm', inSize: 64, isCausalLm: true, predForSequence: true };
  void wrong;
  // @ts-expect-error TS2322 the same inside loadHeaded's heads
  void loadHeaded('model.pt', { heads: [{ name: 'lm', inSize: 64, numOutputs: 101, isCausalLm: true, predForSequence: true }] });
  // @ts-expect-error TS2561 a misspelt field is still an error with inferred names
  void loadHeaded('model.pt', { heads: [{ name: 'a', inSize: 64, numOuputs: 2 }] });
  // @ts-expect-error TS2322 a lossFct that does not exist
  const badLoss: HeadConfig = { name: 'a', inSize: 64, numOutputs: 2, lossFct: 'hinge' };
  void badLoss;
  resolveHeadConfig({ name: 'x', inSize: 64, numOutputs: 2 });
}
