// The public API did not move when ts/ was laid out by layer (docs/ARCHITECTURE.md): the runtime names below are
// Object.keys() of the package entry as it was before (ts/index.ts at commit a56fb62), sorted; the type names are
// pinned by test/types/api.ts (compiled by test/types.test.ts). Added since: ERROR_CODES (the documented error codes),
// the Hub functions (downloadModel, hubCacheDir, resolveModel), threadCounts, and diagnoseNative, loadNative and
// nativeLocation (the asynchronous native loader and `doctor`), data-parallel training (currentProcessGroup,
// DistributedContext, distributedFromEnv, initProcessGroup, shardIndices), and findAllLinearNames and getSomePreds
// (Python parity), releaseCachedMemory (the caching CPU allocator).
import { describe, expect, it } from 'vitest';

import * as api from '../ts/index.js';

const RUNTIME_EXPORTS = [
  'BUILTIN_DATASETS', 'Backbone', 'ERROR_CODES', 'currentProcessGroup', 'DistributedContext', 'distributedFromEnv', 'initProcessGroup', 'shardIndices', 'DEFAULT_MARGIN', 'DEFAULT_MODEL', 'DEFAULT_MODEL_DIR',
  'DataCollatorWithPadding', 'Dataset', 'HeadedModel', 'PALETTE', 'Tokenizer', 'TorchScriptModule', 'Trainer',
  'TransformerHeadsError', 'accuracy', 'accuracyByLayerChart', 'activationCacheBlocker', 'adapterConfigJson',
  'argmaxRows', 'barChart', 'createHeadedQLoRA', 'decodeSafetensors', 'defaultModelPath', 'diagnoseNative', 'downloadModel', 'encodeSafetensors',
  'escapeXml', 'evaluateHeadWise', 'finalEvaluation', 'findAllLinearNames', 'formatProbeTable', 'getSomePreds', 'getTopNPreds', 'headConfigsJson',
  'htmlReport', 'htmlTable', 'hubCacheDir', 'layerName', 'learningRateAt', 'lineChart', 'linearScale', 'loadBackbone',
  'loadBuiltinDataset', 'loadEmbeddedModel', 'loadHeaded', 'loadLabelledFile', 'loadLoraWithHeads', 'loadNative',
  'loadTokenizer', 'loadTorchScript', 'lossChart', 'macroF1', 'meanSquaredError', 'nativeLocation', 'niceTicks', 'permutation',
  'probeLayers', 'r2Score', 'readEmbeddedModelInfo', 'readHeadConfigs', 'readModelConfig', 'readSafetensors',
  'readTable', 'releaseCachedMemory', 'resolveHeadConfig', 'resolveHeadConfigs', 'resolveModel', 'runtimeInfo', 'setNumThreads', 'threadCounts', 'writeProbeOutputs',
];

describe('public API', () => {
  it('exports exactly the runtime names it exported before the layer split, the Hub functions and the native loader', () => {
    expect(Object.keys(api).sort()).toEqual([...RUNTIME_EXPORTS].sort());
  });

  it('exports working values, not undefined re-exports', () => {
    for (const name of RUNTIME_EXPORTS) expect(api[name as keyof typeof api], name).toBeDefined();
    expect(new api.Dataset([{ a: 1 }]).length).toBe(1);
    expect(api.learningRateAt('linear', 1, 5, 0, 10)).toBeCloseTo(0.5, 12);
  });
});
