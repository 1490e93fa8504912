import type { ResolvedHeadConfig } from '../model/index.js';
import type { Tensor } from '../native/index.js';

/**
 * @internal The positions whose predictions carry a loss, as the Python library selects them (pad-based last token,
 * causal shift, -100 labels skipped), appended to `out` for the evaluation metrics.
 */
export function selectForMetrics(
  h: ResolvedHeadConfig,
  preds: Tensor,
  labels: { data: ArrayLike<number>; shape: number[] },
  ids: { data: ArrayLike<number>; shape: number[] },
  pad: number | null,
  out: { preds: number[]; labels: number[] },
): void {
  const [B, T, C] = preds.shape as [number, number, number];
  const seqLen = (b: number) => {
    if (pad === null) return T - 1;
    let first = 0;
    for (let t = 0; t < T; t++) if (ids.data[b * T + t] === pad) { first = t; break; }
    return (((first - 1) % T) + T) % T;
  };
  // Classification heads keep the arg-max class only: a causal-LM head's rows are vocabulary-sized.
  const classify = h.lossFct === 'cross_entropy';
  const push = (b: number, t: number, label: number) => {
    const o = (b * T + t) * C;
    if (classify) {
      let best = 0;
      for (let c = 1; c < C; c++) if (preds.data[o + c]! > preds.data[o + best]!) best = c;
      out.preds.push(best);
    } else {
      for (let c = 0; c < C; c++) out.preds.push(preds.data[o + c]!);
    }
    out.labels.push(label);
  };
  if (h.predForSequence) {
    const per = labels.data.length / B;
    for (let b = 0; b < B; b++) {
      const t = h.ignorePads ? seqLen(b) : T - 1;
      // a row without this head's label (-100, as at token level) is not counted
      if (per === 1 && labels.data[b] !== -100) push(b, t, labels.data[b]!);
    }
    return;
  }
  const LT = labels.shape[1] ?? 1;
  const per = labels.data.length / (B * LT);
  if (per !== 1) return; // multi-value token labels: left to computeMetrics
  for (let b = 0; b < B; b++) {
    const limit = h.ignorePads ? seqLen(b) : T;
    for (let t = 0; t < Math.min(T, LT); t++) {
      const lt = h.isCausalLm ? t + 1 : t;
      if (lt >= LT || t >= limit) continue;
      const y = labels.data[b * LT + lt]!;
      if (y === -100) continue;
      push(b, t, y);
    }
  }
}
