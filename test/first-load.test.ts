// Issue 10 item 10: the first native call must not block the event loop. Loading libtorch takes 1-5 s (more under
// load); it happens on a worker thread (native/loader), so the main thread stays free. Measured in a fresh process, as
// the first thing it does.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import { expect, it } from 'vitest';

const root = resolve(__dirname, '..');

it('the first load of the addon keeps the event loop free', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [resolve(root, 'test/scripts/first-load.mjs'), pathToFileURL(resolve(root, 'dist/index.js')).href], {
    timeout: 300_000,
  });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as {
    load: { maxLagMs: number; wallMs: number; mainCpuMs: number; processCpuMs: number };
    idle: { maxLagMs: number; wallMs: number; mainCpuMs: number };
    torchVersion: string;
  };
  console.log(`first load: ${JSON.stringify(r)}`);
  expect(r.torchVersion).toMatch(/^\d+\.\d+/);
  // Loading libtorch is real work (hundreds of MB of relocations and static initialisers): a load done on the main
  // thread would put nearly all of the process's CPU time on it.
  expect(r.load.processCpuMs).toBeGreaterThan(100);
  // The main thread's share, less what the 10 ms timer's own wakes cost (measured in the idle period: about 0.1 ms a
  // wake on a loaded machine): the loader's bookkeeping and spawning python to find torch, tens of ms. Loading on the
  // main thread would put nearly all of the process's CPU time there.
  const timerCost = (r.idle.mainCpuMs / r.idle.wallMs) * r.load.wallMs;
  expect(r.load.mainCpuMs - timerCost).toBeLessThan(Math.max(150, 0.15 * r.load.processCpuMs));
  // Timer lag: under 50 ms on a quiet machine (the target). On a loaded machine the scheduler alone delays timers,
  // so the bound is relative to the lag of an idle period of the same length measured right after.
  expect(r.load.maxLagMs).toBeLessThan(Math.max(50, 2 * r.idle.maxLagMs + 25));
});
