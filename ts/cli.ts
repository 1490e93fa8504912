#!/usr/bin/env node
// The package's bin (dist/cli.js): runs the command line (cli/main.ts) when executed, not when imported.
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { main } from './cli/index.js';

export { main };

const invokedAs = process.argv[1] ? resolve(process.argv[1]) : '';
const self = fileURLToPath(import.meta.url);
let isMain = invokedAs === self;
if (!isMain && invokedAs) {
  try {
    isMain = realpathSync(invokedAs) === self;
  } catch {
    isMain = false;
  }
}
if (isMain) {
  process.exitCode = await main(process.argv.slice(2));
}
