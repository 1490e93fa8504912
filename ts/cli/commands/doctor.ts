// transformer-heads doctor: what this installation found and loaded (Node, N-API, libtorch, the binary, CUDA, BLAS,
// threads), and each problem with the one command that fixes it.
import { diagnoseNative, type NativeDiagnosis } from '../../native/index.js';
import { BIN, usageError, type Command } from '../args.js';
import { textTable } from '../ui.js';

function rows(r: NativeDiagnosis): Array<[string, string]> {
  const out: Array<[string, string]> = [
    ['node', `${r.node.version} (N-API ${r.node.napi ?? '?'}, ${r.node.platform}-${r.node.arch}${r.node.libc ? `, ${r.node.libc}` : ''}${r.node.electron ? `, Electron ${r.node.electron}` : ''})`],
    ['package', `transformer-heads ${r.package.version ?? '?'} in ${r.package.root}`],
  ];
  const lt = r.libtorch;
  out.push(['libtorch', lt ? `${lt.version ?? 'version unknown'} (${lt.cuda ? 'CUDA' : 'CPU'}, C++${lt.cxx11Abi === 0 ? ' pre-cxx11' : '11'} ABI) from ${lt.detail}` : 'not found']);
  if (lt) out.push(['libtorch libraries', `${lt.libraries.join(', ')} in ${lt.libdir}`]);
  for (const b of r.binaries) {
    const built = b.builtFor ? `built for libtorch ${b.builtFor.torchVersion ?? '?'} ${b.builtFor.cuda ? 'CUDA' : 'CPU'}` : 'no build record';
    out.push([b.kind, `${b.path} (${built}): ${b.status}`]);
  }
  if (!r.binaries.length) out.push(['binary', 'none: no prebuild for this platform and no local build']);
  if (r.binary) out.push(['loaded', `${r.binary.kind} in ${r.binary.loadMs} ms (libtorch loaded off the event loop by ${r.binary.loader})`]);
  if (r.runtime) {
    const rt = r.runtime;
    out.push(['torch reports', `version ${String(rt.torchVersion)}, CUDA ${rt.cudaAvailable ? `available, ${String(rt.cudaDeviceCount)} device(s)` : 'not available'}`]);
    for (const [k, v] of Object.entries(rt)) if (!['torchVersion', 'cudaAvailable', 'cudaDeviceCount', 'numThreads'].includes(k)) out.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  out.push(['BLAS', r.libraries.blas.join(', ') || (r.ok ? 'none mapped as a separate library (linked into libtorch)' : 'unknown until the addon loads')]);
  if (r.libraries.openmp.length) out.push(['OpenMP', r.libraries.openmp.join(', ')]);
  if (r.libraries.cuda.length) out.push(['CUDA libraries', r.libraries.cuda.join(', ')]);
  const env = Object.entries(r.threads.env).map(([k, v]) => `${k}=${v}`).join(' ');
  const t = r.threads;
  const more = t.osThreads !== null ? `, ${t.computeThreads ?? '?'} compute thread(s) started, ${t.osThreads} OS threads in this process` : '';
  out.push(['threads', `${t.numThreads ?? '?'} libtorch intra-op threads per compute thread, ${t.cores} cores${more}${env ? `; ${env}` : ''}`]);
  return out;
}

export const DOCTOR: Command = {
  summary: 'check the installation: Node, libtorch, the native binary, CUDA, BLAS, threads',
  usage: `${BIN} doctor [--json]`,
  options: {},
  help: `Finds libtorch (TRANSFORMER_HEADS_LIBTORCH / LIBTORCH, Torch_DIR, PyTorch's Python package, the system), lists
the binaries this package has (prebuilds and a local build) and whether each fits that libtorch, loads the one that
fits, and prints what libtorch reports. Each problem is printed with the command that fixes it.
Exit code 0 when the native addon loads, 1 when it does not. --json prints the same as one JSON object.`,
  async run(_v, pos, ui) {
    if (pos.length) usageError(`doctor takes no arguments, got '${pos[0]}'`, 'doctor');
    const r = await diagnoseNative();
    ui.emit({ command: 'doctor', ...r });
    ui.print(textTable({ columns: ['check', 'found'], rows: rows(r) }));
    for (const p of r.problems) ui.print(`${r.ok ? 'warning' : 'problem'}: ${p.message}${p.fix ? `\n  fix: ${p.fix}` : ''}`);
    if (r.ok && !r.problems.length) ui.print('ok: the native addon loads');
    return r.ok ? 0 : 1;
  },
};
