/**
 * A running job (`train`, `evolve`): a Promise of its result and an EventEmitter of typed events.
 * `Events` maps each event name to its listener's arguments, so `run.on('epoch', (e) => …)` types
 * `e`, and a name the job does not emit is a type error.
 */
import { EventEmitter } from 'node:events';

export type EventMap<E> = { [K in keyof E]: unknown[] };

export class Run<Result, Events extends EventMap<Events>>
  extends EventEmitter<Events>
  implements Promise<Result>
{
  readonly #promise: Promise<Result>;
  readonly #tag: string;

  constructor(tag: string, body: (self: Run<Result, Events>) => Promise<Result>) {
    super();
    this.#tag = tag;
    // Let listeners attach before anything is emitted.
    this.#promise = new Promise<void>((r) => setImmediate(r)).then(() => body(this));
  }

  get [Symbol.toStringTag](): string {
    return this.#tag;
  }

  then<A = Result, B = never>(
    onFulfilled?: ((value: Result) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promise.then(onFulfilled, onRejected);
  }

  catch<B = never>(
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<Result | B> {
    return this.#promise.catch(onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<Result> {
    return this.#promise.finally(onFinally);
  }
}
