// The command-line layer: the top of the house, over every other layer. ts/cli.ts (the package's bin) runs main().
export { main } from './main.js';
