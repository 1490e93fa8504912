// Run by first-load.test.ts in a fresh process: the first native load (finding libtorch, dlopening it, requiring the
// addon) measured with a 10 ms interval timer and the main thread's own CPU time, then an idle period of the same
// length with the same timer, as the machine's own baseline lag. Prints one JSON line.
import { readFileSync } from 'node:fs';

const entry = process.argv[2];
// The main thread's CPU time (utime + stime of the task whose id is the pid), in ms: what blocks the event loop,
// whatever the machine's load. /proc clock ticks are 100 Hz on Linux.
const mainCpuMs = () => {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};
const processCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function watch(op) {
  let maxLagMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last - 10);
    last = now;
  }, 10);
  const c0 = mainCpuMs();
  const p0 = processCpuMs();
  const t0 = performance.now();
  const result = await op();
  const wallMs = performance.now() - t0;
  clearInterval(timer);
  return { result, maxLagMs, wallMs, mainCpuMs: mainCpuMs() - c0, processCpuMs: processCpuMs() - p0 };
}

const th = await import(entry);
const load = await watch(() => th.loadNative());
const idle = await watch(() => new Promise((r) => setTimeout(r, Math.min(load.wallMs, 5000))));
const info = await th.runtimeInfo();
console.log(
  JSON.stringify({
    load: { ...load, result: undefined, kind: load.result.binary.kind, libtorch: load.result.libtorch.version },
    idle: { ...idle, result: undefined },
    torchVersion: info.torchVersion,
  }),
);
