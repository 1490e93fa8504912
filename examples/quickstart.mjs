import { formatProbeTable, loadNative, probeLayers } from 'transformer-heads';

const { libtorch, binary } = await loadNative(); // finds libtorch and loads it off the event loop
console.log(`libtorch ${libtorch.version} from ${libtorch.detail}, ${binary.kind}`);

// A linear probe on every layer of the embedded model: is a word a stop word ("the", "because") or a content word?
const result = await probeLayers({ dataset: 'stop-words', epochs: 3 });
console.log(formatProbeTable(result)); // accuracy by layer, against the majority class
