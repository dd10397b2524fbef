/**
 * Typed run events. The functions below are never called: `npm run typecheck` (tsc over test/)
 * checks them, and each `@ts-expect-error` line must be an error (an unknown event name, a wrong
 * payload field), or tsc fails on the unused directive.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { Run, type EvolveRun, type TrainRun } from '../lib';

export function trainEventTypes(run: TrainRun): void {
  run.on('epoch', (e) => {
    const epoch: number = e.epoch;
    const map: number | undefined = e.val?.metrics.mAP50;
    const best: boolean = e.best;
    void [epoch, map, best];
    // @ts-expect-error EpochEvent has no field `loss`
    void e.loss;
  });
  run.on('batch', (b) => void (b.batch satisfies number));
  run.on('log', (line) => void (line satisfies string));
  // @ts-expect-error 'epochs' is not an event of a training
  run.on('epochs', () => {});
  // @ts-expect-error 'generation' is an evolution's event, not a training's
  run.once('generation', () => {});
}

export function evolveEventTypes(run: EvolveRun): void {
  run.on('generation', (g) => void (g.fitness satisfies number));
  run.on('epoch', (e) => void (e.generation satisfies number));
  // @ts-expect-error 'gen' is not an event of an evolution
  run.on('gen', () => {});
}

test('a Run emits its typed events before it resolves, and is a thenable', async () => {
  const ticks: number[] = [];
  const run = new Run<string, { tick: [number] }>('Demo', async (self) => {
    self.emit('tick', 1);
    self.emit('tick', 2);
    return 'done';
  });
  run.on('tick', (n) => ticks.push(n));
  assert.equal(await run, 'done');
  assert.deepEqual(ticks, [1, 2]);
  assert.equal(Object.prototype.toString.call(run), '[object Demo]');
  await assert.rejects(
    new Run<void, { x: [] }>('Failing', async () => {
      throw new Error('boom');
    }),
    /boom/,
  );
});
