// A user's TypeScript file against the installed package, compiled by scripts/check_install.sh with the strictest
// settings a user may have (strict, exactOptionalPropertyTypes, skipLibCheck false): the published .d.ts must compile
// there, including every type a public class uses.
import {
  diagnoseNative,
  formatProbeTable,
  loadBackbone,
  loadEmbeddedModel,
  loadNative,
  probeLayers,
  TransformerHeadsError,
  type HeadedModel,
  type NativeDiagnosis,
  type ProbeResult,
} from 'transformer-heads';

export async function main(): Promise<number> {
  const { libtorch } = await loadNative();
  const report: NativeDiagnosis = await diagnoseNative();
  const model: HeadedModel = await loadEmbeddedModel({ heads: [{ name: 'stop', inSize: 128, numOutputs: 2, predForSequence: true, layerHook: 2 }] });
  const out = await model.forward({ input_ids: [[1, 2, 3]], stop: [1] });
  model.dispose();
  const backbone = await loadBackbone('model-dir', { device: 'cpu' });
  const hidden = await backbone.hiddenStates({ input_ids: [[1, 2]] }, { layers: [-1] });
  const result: ProbeResult = await probeLayers({ dataset: 'stop-words', epochs: 1, layers: [0, -1] });
  console.log(libtorch.version, report.ok, out.loss, hidden.get(-1)?.shape, formatProbeTable(result));
  try {
    await loadBackbone('');
  } catch (e) {
    if (e instanceof TransformerHeadsError) return e.code === 'ERR_TH_ARG' ? 0 : 1;
  }
  return 1;
}
