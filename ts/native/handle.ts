import { nativeCall, TransformerHeadsError } from '../errors.js';

/**
 * A JS handle on a native model: calls run one at a time, in call order, and dispose() frees the native side once
 * they are done. The native side runs them on its device's compute thread in the order posted too; this queue
 * keeps a call made of several native calls whole (save() reads the adapters and every head between two steps),
 * and gives dispose its meaning.
 */
export class NativeHandle<N extends { dispose(): void }> {
  #native: N | null;
  #queue: Promise<unknown> = Promise.resolve();

  /** @internal */
  constructor(native: N) {
    this.#native = native;
  }

  get disposed(): boolean {
    return this.#native === null;
  }

  /**
   * Frees the weights once the calls already made have finished; further calls throw ERR_TH_DISPOSED.
   * Without dispose() the garbage collector frees them too, but later: V8 cannot see how large they are.
   */
  dispose(): void {
    const native = this.#native;
    if (!native) return;
    this.#native = null;
    void this.#queue.then(() => native.dispose());
  }

  /** The same as dispose(), for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  protected _live(): N {
    if (!this.#native) throw new TransformerHeadsError('this model was disposed; load it again to use it', 'ERR_TH_DISPOSED');
    return this.#native;
  }

  /** @internal Queues a native call; its failure becomes a TransformerHeadsError pointing at the caller. */
  protected _call<T>(fn: (native: N) => Promise<T>): Promise<T> {
    const native = this._live();
    return this._enqueue(() => nativeCall(() => fn(native)));
  }

  /** @internal */
  protected _enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
