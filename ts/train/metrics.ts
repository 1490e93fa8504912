/** Fraction of predictions equal to the labels. */
export function accuracy(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (predictions.length !== labels.length || labels.length === 0) return Number.NaN;
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (predictions[i] === labels[i]) ok++;
  return ok / labels.length;
}

/** Unweighted mean of the per-class F1 scores over the classes that occur in labels or predictions. */
export function macroF1(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  const classes = new Set<number>();
  for (let i = 0; i < labels.length; i++) classes.add(labels[i]!).add(predictions[i]!);
  if (classes.size === 0) return Number.NaN;
  let sum = 0;
  for (const c of classes) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < labels.length; i++) {
      const p = predictions[i] === c;
      const l = labels[i] === c;
      if (p && l) tp++;
      else if (p) fp++;
      else if (l) fn++;
    }
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return sum / classes.size;
}

/** Mean of the squared differences between predictions and labels. */
export function meanSquaredError(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (predictions.length !== labels.length || labels.length === 0) return Number.NaN;
  let s = 0;
  for (let i = 0; i < labels.length; i++) s += (predictions[i]! - labels[i]!) ** 2;
  return s / labels.length;
}

/** Coefficient of determination: 1 - SS_res / SS_tot. */
export function r2Score(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (predictions.length !== labels.length || labels.length === 0) return Number.NaN;
  let mean = 0;
  for (let i = 0; i < labels.length; i++) mean += labels[i]!;
  mean /= labels.length;
  let res = 0;
  let tot = 0;
  for (let i = 0; i < labels.length; i++) {
    res += (labels[i]! - predictions[i]!) ** 2;
    tot += (labels[i]! - mean) ** 2;
  }
  return tot === 0 ? Number.NaN : 1 - res / tot;
}

/** Index of the largest value in each row of a [N, C] matrix. */
export function argmaxRows(data: ArrayLike<number>, cols: number): Int32Array {
  const n = Math.floor(data.length / cols);
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c]! > data[r * cols + best]!) best = c;
    out[r] = best;
  }
  return out;
}
