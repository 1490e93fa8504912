// Electron packs an app into app.asar, a read-only archive that Electron's patched fs reads but the operating system
// does not: a .node binary, libtorch and a model's weights (memory-mapped by the native core) must live outside it,
// in app.asar.unpacked (electron-builder's asarUnpack, Electron Forge's asar.unpack). These helpers map package paths
// there and refuse a model path inside an archive with that hint, instead of failing later inside mmap.
import { TransformerHeadsError } from '../errors.js';

const ASAR_SEGMENT = /\.asar(?=[\\/]|$)/;

/** Whether `path` lies inside an asar archive (a path segment ending in .asar). */
export function insideAsar(path: string): boolean {
  return ASAR_SEGMENT.test(path);
}

/**
 * `path` with its archive segment (app.asar) replaced by the unpacked twin (app.asar.unpacked) under Electron
 * (`electron`: Electron's version, by default the running one); unchanged elsewhere.
 */
export function outsideAsar(path: string, electron: string | undefined = process.versions.electron): string {
  return electron && insideAsar(path) ? path.replace(ASAR_SEGMENT, '.asar.unpacked') : path;
}

/** Throws ERR_TH_FILE for a model path inside an asar archive: the native core cannot read or map files there. */
export function refuseAsar(path: string, what = 'model'): void {
  if (!insideAsar(path)) return;
  const unpacked = path.replace(ASAR_SEGMENT, '.asar.unpacked');
  throw new TransformerHeadsError(
    `the ${what} path '${path}' is inside an asar archive, which the native core cannot read or memory-map\n` +
      `unpack it (electron-builder: "asarUnpack": ["**/models/**"]) and pass '${unpacked}', or keep models outside the app (app.getPath('userData'))`,
    'ERR_TH_FILE',
  );
}
