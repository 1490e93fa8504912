// Type-level tests, compiled and never run: test/types/api.ts (every public type name is still exported) and
// test/types/head-names.ts (typed head names and head kinds). `tsc --noEmit -p test/types` must pass, which fails when
// an `@ts-expect-error` line stops erroring; and with those directives removed, exactly the marked lines must fail,
// each with the error code its directive names (so a line cannot pass by failing for another reason). Last, the
// declarations the package publishes compile on their own for a consumer that checks them (skipLibCheck false).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

import { root } from './helpers.js';

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const project = join(root, 'test', 'types', 'tsconfig.json');
const headNames = join(root, 'test', 'types', 'head-names.ts');

/** Line (1-based) -> error code, for every `// @ts-expect-error TSnnnn` directive: the line after it must fail. */
function expectedErrors(text: string): Map<number, number> {
  const out = new Map<number, number>();
  text.split('\n').forEach((line, i) => {
    const m = /^\s*\/\/ @ts-expect-error TS(\d+)\b/.exec(line);
    if (m) out.set(i + 2, Number(m[1]));
    else if (/^\s*\/\/ @ts-expect-error/.test(line)) throw new Error(`line ${i + 1}: name the expected error code (// @ts-expect-error TSnnnn ...)`);
  });
  return out;
}

/** The fixture's diagnostics (line -> codes) when compiled with its @ts-expect-error directives turned into comments. */
function errorsWithoutDirectives(file: string): Map<number, number[]> {
  const parsed = ts.getParsedCommandLineOfConfigFile(project, {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  });
  if (!parsed) throw new Error(`cannot read ${project}`);
  const stripped = readFileSync(file, 'utf8').replace(/\/\/ @ts-expect-error/g, '// expected error');
  const host = ts.createCompilerHost(parsed.options);
  const read = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) => (resolve(name) === file ? ts.createSourceFile(name, stripped, lang) : read(name, lang, ...rest));
  const program = ts.createProgram([file], parsed.options, host);
  const out = new Map<number, number[]>();
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const where = d.file && resolve(d.file.fileName) === file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1 : 0;
    out.set(where, [...(out.get(where) ?? []), d.code]);
  }
  return out;
}

describe('types', () => {
  it('tsc --noEmit -p test/types passes: public type names exported, correct head-name use compiles, every @ts-expect-error errors', () => {
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', project], { cwd: root, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  }, 600_000);

  it('each marked line of head-names.ts fails for the reason it names, and no other line fails', () => {
    const expected = expectedErrors(readFileSync(headNames, 'utf8'));
    expect(expected.size).toBeGreaterThanOrEqual(15);
    const actual = errorsWithoutDirectives(headNames);
    for (const [line, code] of expected) expect(actual.get(line), `line ${line}`).toEqual([code]);
    expect([...actual.keys()].filter((l) => !expected.has(l)), 'lines that fail without a directive').toEqual([]);
  }, 600_000);

  // One full check of ts/ plus a small one: a few seconds alone, minutes on a loaded 2-core machine.
  it('the published .d.ts files compile for a consumer that does not skip library checks', () => {
    const parsed = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), { emitDeclarationOnly: true, declarationMap: false }, {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    });
    if (!parsed) throw new Error('cannot read tsconfig.json');
    // The declarations as `npm run build` publishes them (stripInternal included), kept in memory under dist/.
    const files = new Map<string, string>();
    const emitted = ts.createProgram(parsed.fileNames, parsed.options).emit(undefined, (name, text) => files.set(resolve(name), text));
    expect(emitted.diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
    const consumer = join(root, 'out', 'dts-consumer.ts');
    files.set(
      consumer,
      [
        "import { loadHeaded, Trainer, type HeadConfig } from '../dist/index.js';",
        "const typed = await loadHeaded('m.pt', { heads: [{ name: 'a', inSize: 8, numOutputs: 2 }] });",
        'const heads: HeadConfig[] = [];',
        "const untyped = await loadHeaded('m.pt', { heads });",
        "export const metrics = await new Trainer(typed, { outputDir: 'o' }, { dataCollator: null! }).evaluate();",
        'export const a: number = metrics.eval_a_accuracy + untyped.heads.length;',
        '',
      ].join('\n'),
    );
    const options: ts.CompilerOptions = {
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
    };
    const host = ts.createCompilerHost(options);
    const { fileExists, readFile, getSourceFile, directoryExists } = host;
    const dirs = new Set([...files.keys()].flatMap((f) => f.split('/').map((_, i, parts) => parts.slice(0, i).join('/')).filter(Boolean)));
    host.directoryExists = (name) => dirs.has(resolve(name)) || (directoryExists?.call(host, name) ?? false);
    host.fileExists = (name) => files.has(resolve(name)) || fileExists.call(host, name);
    host.readFile = (name) => files.get(resolve(name)) ?? readFile.call(host, name);
    host.getSourceFile = (name, lang, ...rest) => {
      const text = files.get(resolve(name));
      return text === undefined ? getSourceFile.call(host, name, lang, ...rest) : ts.createSourceFile(name, text, lang);
    };
    const diagnostics = ts.getPreEmitDiagnostics(ts.createProgram([consumer], options, host));
    expect(diagnostics.map((d) => `${d.file ? relative(root, d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`)).toEqual([]);
  }, 600_000);
});
