// Electron's asar archives: paths inside one are mapped to app.asar.unpacked for the package's own files, and refused
// with a hint for models (the native core memory-maps weights, which the OS cannot do inside an archive).
import { describe, expect, it } from 'vitest';

import { loadBackbone, loadHeaded, TransformerHeadsError } from '../ts/index.js';
import { insideAsar, outsideAsar } from '../ts/native/index.js';

const inArchive = '/opt/App/resources/app.asar/node_modules/transformer-heads/models/tiny';

describe('asar paths', () => {
  it('recognises a path inside an archive, and only that', () => {
    expect(insideAsar(inArchive)).toBe(true);
    expect(insideAsar('/opt/App/resources/app.asar')).toBe(true);
    expect(insideAsar('C:\\App\\resources\\app.asar\\models\\m')).toBe(true);
    expect(insideAsar('/opt/App/resources/app.asar.unpacked/models/m')).toBe(false);
    expect(insideAsar('/data/my.asarfile/model')).toBe(false);
  });

  it('maps package paths to app.asar.unpacked under Electron only', () => {
    expect(outsideAsar(inArchive, '35.0.0')).toBe('/opt/App/resources/app.asar.unpacked/node_modules/transformer-heads/models/tiny');
    expect(outsideAsar(inArchive, undefined)).toBe(inArchive);
    expect(outsideAsar('/srv/models/tiny', '35.0.0')).toBe('/srv/models/tiny');
  });

  it('refuses a model inside an archive before loading anything, naming the unpacked path', async () => {
    for (const load of [() => loadBackbone(inArchive), () => loadHeaded(inArchive, { heads: [{ name: 'h', inSize: 4, numOutputs: 2 }] })]) {
      const e = await load().then(
        () => null,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(TransformerHeadsError);
      expect((e as TransformerHeadsError).code).toBe('ERR_TH_FILE');
      expect((e as Error).message).toContain('inside an asar archive');
      expect((e as Error).message).toContain('app.asar.unpacked/node_modules/transformer-heads/models/tiny');
    }
  });
});
