import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as yaml from 'js-yaml';
import { readModelConfig } from '../lib/config/model';
import {
  EVOLVE_META,
  EVOLVE_RESULT_COLUMNS,
  evolve,
  evolveKeys,
  mutateHyp,
  readEvolveCsv,
  selectParent,
  type EvolveHyp,
  type EvolveKey,
  type EvolveOptions,
  type EvolveRow,
} from '../lib/train/evolve';
import { HYP_KEYS, readHyp } from '../lib/config/hyp';
import { loadModel } from '../lib/model/load';
import { mulberry32 } from '../lib/train/random';
import { ensureSyntheticDataset } from '../lib/data/synthetic';
import { train } from '../lib/train/train';
import { tempDir } from './helpers';

const ALL = evolveKeys(false);
const GAIN0 = ALL.filter((k) => EVOLVE_META[k][0] === 0).sort();

function startHyp(): EvolveHyp {
  return { ...readHyp(undefined), anchors: 3 };
}

function isRounded5(v: number): boolean {
  return Math.abs(v * 1e5 - Math.round(v * 1e5)) < 1e-6;
}

function assertInBounds(h: EvolveHyp, keys: readonly EvolveKey[], what: string): void {
  for (const k of keys) {
    const [, lo, hi] = EVOLVE_META[k];
    const v = h[k]!;
    assert.ok(v >= lo && v <= hi, `${what}: ${k} = ${v} outside [${lo}, ${hi}]`);
    assert.ok(isRounded5(v), `${what}: ${k} = ${v} not rounded to 5 decimals`);
  }
}

describe('mutation', () => {
  test('stays within the limits, rounds to 5 decimals, never moves gain-0 keys', () => {
    assert.deepEqual(GAIN0, ['fl_gamma', 'fliplr', 'iou_t', 'perspective']);
    const parent = startHyp();
    let changed = 0;
    for (let seed = 0; seed < 200; seed++) {
      const h = mutateHyp(parent, ALL, mulberry32(seed));
      assertInBounds(h, ALL, `seed ${seed}`);
      for (const k of GAIN0) assert.equal(h[k], parent[k], `${k} mutated`);
      if (ALL.some((k) => h[k] !== parent[k])) changed++;
    }
    assert.equal(changed, 200);
    // Out-of-bounds parents are clipped into the limits.
    const wild = mutateHyp({ ...parent, lr0: 5, momentum: 0.1 }, ALL, mulberry32(1));
    assert.equal(wild.lr0, 0.1);
    assert.equal(wild.momentum, 0.6);
  });

  test('each factor lies in [0.3, 3]', () => {
    const parent: EvolveHyp = { lr0: 0.001, cls: 1 };
    for (let seed = 0; seed < 100; seed++) {
      const h = mutateHyp(parent, ['lr0', 'cls'], mulberry32(seed), { sigma: 1000 });
      for (const k of ['lr0', 'cls'] as const) {
        const f = h[k]! / parent[k]!;
        assert.ok(f >= 0.3 - 1e-9 && f <= 3 + 1e-9, `${k} factor ${f}`);
      }
    }
  });

  test('is deterministic for a seed and differs between seeds', () => {
    const parent = startHyp();
    assert.deepEqual(
      mutateHyp(parent, ALL, mulberry32(42)),
      mutateHyp(parent, ALL, mulberry32(42)),
    );
    assert.notDeepEqual(
      mutateHyp(parent, ALL, mulberry32(42)),
      mutateHyp(parent, ALL, mulberry32(43)),
    );
  });

  test('draws again until some factor is not 1', () => {
    const parent = startHyp();
    const inner = mulberry32(7);
    let calls = 0;
    // The first draw's shared factor is 0: every factor is 1, so the draw must repeat.
    const rand = () => (calls++ === 0 ? 0 : inner());
    const h = mutateHyp(parent, ALL, rand);
    assert.ok(calls > 1 + 3 * ALL.length, `only ${calls} random numbers used`);
    assert.ok(ALL.some((k) => h[k] !== parent[k]));
    // Without the forced repeat the same generator gives another result.
    assert.notDeepEqual(h, mutateHyp(parent, ALL, mulberry32(7)));
    assert.throws(() => mutateHyp(parent, GAIN0, mulberry32(1)), { code: 'E_ARG' });
    assert.throws(() => mutateHyp({ lr0: 0.01 }, ['lr0', 'lrf'], mulberry32(1)), /lrf/);
  });
});

describe('parent selection', () => {
  const row = (generation: number, mAP50: number, mAP50_95: number, lr0: number): EvolveRow => ({
    generation,
    precision: 0,
    recall: 0,
    mAP50,
    mAP50_95,
    valLoss: [0, 0, 0],
    fitness: 0.1 * mAP50 + 0.9 * mAP50_95,
    hyp: { lr0 },
  });
  const rows = [
    row(1, 0.5, 0.3, 0.01), // fitness 0.32
    row(2, 0.1, 0.05, 0.02), // 0.055: not among the best five
    row(3, 0.6, 0.4, 0.03), // 0.42
    row(4, 0.5, 0.2, 0.04), // 0.23: the 5th best, weight 1e-6
    row(5, 0.7, 0.5, 0.05), // 0.52
    row(6, 0.3, 0.1, 0.06), // 0.12: not among the best five
    row(7, 0.8, 0.6, 0.07), // 0.62
  ];

  test('weighted: the fitness-weighted mean of the best five', () => {
    const top = [...rows].sort((a, b) => b.fitness - a.fitness).slice(0, 5);
    const min = Math.min(...top.map((r) => r.fitness));
    const w = top.map((r) => r.fitness - min + 1e-6);
    const expected = top.reduce((s, r, i) => s + r.hyp.lr0! * w[i]!, 0) / w.reduce((a, b) => a + b);
    const got = selectParent(rows, ['lr0'], 'weighted', mulberry32(0)).lr0!;
    assert.ok(Math.abs(got - expected) < 1e-12, `${got} vs ${expected}`);
  });

  test('single: one of the best five, in proportion to fitness above the lowest', () => {
    const rand = mulberry32(3);
    const counts = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const lr0 = selectParent(rows, ['lr0'], 'single', rand).lr0!;
      counts.set(lr0, (counts.get(lr0) ?? 0) + 1);
    }
    assert.equal(counts.get(0.02), undefined, 'row 2 is not among the best five');
    assert.equal(counts.get(0.06), undefined, 'row 6 is not among the best five');
    assert.ok((counts.get(0.04) ?? 0) <= 1, 'the lowest of the five weighs ~0');
    // Weights above the lowest (0.23): rows 7, 5, 3, 1 weigh 0.39, 0.29, 0.19, 0.09 of 0.96.
    for (const [lr0, w] of [
      [0.07, 0.39],
      [0.05, 0.29],
      [0.03, 0.19],
      [0.01, 0.09],
    ] as const) {
      const share = (counts.get(lr0) ?? 0) / 4000;
      assert.ok(Math.abs(share - w / 0.96) < 0.03, `lr0 ${lr0}: share ${share}`);
    }
    // A single row is its own parent.
    assert.deepEqual(selectParent([rows[0]!], ['lr0'], 'single', rand), { lr0: 0.01 });
  });
});

describe('evolution runs', () => {
  const work = tempDir('yolo5-evolve-');
  let data = '';
  // yolov5n with a shrunk depth and width: 0.45 M parameters.
  const cfg = path.join(work, 'tiny.yaml');
  fs.writeFileSync(
    cfg,
    yaml.dump({
      ...readModelConfig('yolov5n.yaml').config,
      depth_multiple: 0.33,
      width_multiple: 0.125,
    }),
  );
  const base = async (extra: Partial<EvolveOptions> = {}): Promise<EvolveOptions> => {
    data ||= await ensureSyntheticDataset(
      {
        name: 'evolve',
        classes: ['circle', 'square'],
        train: 8,
        val: 4,
        size: 64,
        seed: 3,
        style: 'a',
      },
      path.join(work, 'data'),
    );
    return {
      data,
      cfg,
      imgsz: 64,
      batch: 8,
      epochs: 1,
      workers: 1,
      seed: 1,
      project: path.join(work, 'runs'),
      ...extra,
    };
  };

  test('3 generations, then resumed to 4: evolve.csv, hyp_evolve.yaml, limits, anchors', async () => {
    const logs: string[] = [];
    const gens: number[] = [];
    const run = evolve(await base({ generations: 3, name: 'a', log: (l) => logs.push(l) }));
    run.on('generation', (g: { generation: number }) => gens.push(g.generation));
    const r = await run;
    assert.equal(r.status, 'completed');
    assert.deepEqual(gens, [1, 2, 3]);
    assert.equal(r.dir, path.join(work, 'runs', 'a'));
    const lines = fs.readFileSync(r.csv, 'utf8').trim().split('\n');
    assert.equal(lines.length, 4);
    assert.deepEqual(lines[0]!.split(','), [...EVOLVE_RESULT_COLUMNS, ...ALL]);
    for (const l of lines.slice(1)) assert.equal(l.split(',').length, 7 + ALL.length);
    assert.deepEqual(r.keys, ALL);
    assert.deepEqual(r.rows, readEvolveCsv(r.csv, ALL));
    const start = startHyp();
    assert.deepEqual(r.rows[0]!.hyp, start, 'generation 1 trains the starting hyps as they are');
    for (const row of r.rows.slice(1)) {
      assert.ok(
        ALL.some((k) => row.hyp[k] !== start[k]),
        `generation ${row.generation} equals the start`,
      );
      assertInBounds(row.hyp, ALL, `generation ${row.generation}`);
      for (const k of GAIN0) assert.equal(row.hyp[k], start[k], `${k} changed`);
    }
    for (const row of r.rows) {
      assert.ok(row.mAP50 >= 0 && row.mAP50 <= 1 && row.valLoss.every((v) => v > 0));
      assert.ok(Math.abs(row.fitness - (0.1 * row.mAP50 + 0.9 * row.mAP50_95)) < 1e-12);
    }
    // Each generation trained with round(anchors) per level, computed by autoanchor.
    const computed = logs
      .map((l) => /AutoAnchor: computing (\d+) anchors/.exec(l)?.[1])
      .filter((v) => v !== undefined)
      .map(Number);
    assert.deepEqual(
      computed,
      r.rows.map((row) => 3 * Math.round(row.hyp.anchors!)),
    );
    // No checkpoints: each generation keeps only its logs.
    for (const g of r.trained) {
      assert.equal(fs.existsSync(path.join(g.saveDir, 'weights')), false);
      assert.ok(fs.existsSync(path.join(g.saveDir, 'results.csv')));
    }

    // hyp_evolve.yaml: the best row, which the hyp loader reads back.
    const best = r.rows.reduce((b, x) => (x.fitness > b.fitness ? x : b));
    assert.deepEqual(r.best, best);
    const text = fs.readFileSync(r.hypFile, 'utf8');
    assert.match(text, new RegExp(`^# .*best of 3 generations`, 'm'));
    assert.match(text, new RegExp(`fitness ${best.fitness.toFixed(5)}`));
    assert.match(text, /# Train with: yolo5 train --hyp /);
    assert.deepEqual({ ...readHyp(r.hypFile, () => {}, { complete: true }) }, best.hyp);
    assert.ok(logs.some((l) => l === `Train with them: yolo5 train --hyp ${r.hypFile}`));

    // Resume to 4: exactly one row more, the first three untouched; twice from the same state
    // gives the same mutation (the generator is seeded by seed and generation).
    const copy = path.join(work, 'runs', 'a-copy');
    fs.cpSync(r.dir, copy, { recursive: true });
    const before = fs.readFileSync(r.csv, 'utf8');
    const resumed = await evolve({ resumeEvolve: r.dir, generations: 4 });
    assert.equal(resumed.status, 'completed');
    assert.equal(resumed.trained.length, 1);
    assert.equal(resumed.trained[0]!.generation, 4);
    const after = fs.readFileSync(r.csv, 'utf8');
    assert.ok(after.startsWith(before));
    assert.equal(after.trim().split('\n').length, 5);
    const again = await evolve({ resumeEvolve: copy, generations: 4 });
    assert.deepEqual(again.rows[3]!.hyp, resumed.rows[3]!.hyp);
    // Already complete: nothing more is trained.
    const done = await evolve({ resumeEvolve: r.dir });
    assert.equal(done.trained.length, 0);
    assert.equal(done.rows.length, 4);

    // Never clobbered: the same folder again is refused, evolve.csv unchanged.
    await assert.rejects(evolve(await base({ name: 'a', existOk: true })), {
      code: 'E_EVOLVE',
      message: /already holds an evolution: continue it with --resume-evolve/,
    });
    assert.equal(fs.readFileSync(r.csv, 'utf8'), after);

    // A damaged evolve.csv names the line.
    fs.appendFileSync(path.join(copy, 'evolve.csv'), '0.1,0.2,x\n');
    await assert.rejects(evolve({ resumeEvolve: copy, generations: 9 }), {
      code: 'E_EVOLVE',
      message: new RegExp(`evolve\\.csv:6: expected ${7 + ALL.length} values but found 3`),
    });
  });

  test('an abort stops before the next generation; the folder resumes', async () => {
    const controller = new AbortController();
    const run = evolve(
      await base({ generations: 3, name: 'abort', noautoanchor: true, signal: controller.signal }),
    );
    run.on('generation', () => controller.abort());
    const r = await run;
    assert.equal(r.status, 'aborted');
    assert.equal(r.rows.length, 1);
    assert.equal(fs.readFileSync(r.csv, 'utf8').trim().split('\n').length, 2);
    const more = await evolve({ resumeEvolve: r.dir, generations: 2 });
    assert.equal(more.status, 'completed');
    assert.deepEqual(
      more.trained.map((g) => g.generation),
      [2],
    );
  });

  test('--freeze composes; --noautoanchor leaves anchors out', async () => {
    const r = await evolve(
      await base({ generations: 2, name: 'frozen', freeze: 10, noautoanchor: true }),
    );
    assert.equal(r.status, 'completed');
    const keys = ALL.filter((k) => k !== 'anchors');
    assert.deepEqual(r.keys, keys);
    assert.equal(
      fs.readFileSync(r.csv, 'utf8').split('\n')[0],
      [...EVOLVE_RESULT_COLUMNS, ...keys].join(','),
    );
    const m = await loadModel({ cfg, nc: 2 });
    const frozen = m.freeze(10);
    const trainable = m.info().gradients;
    assert.ok(frozen.length > 0 && trainable < m.info().parameters);
    assert.equal(r.trained.length, 2);
    for (const g of r.trained) {
      assert.equal(g.frozen, frozen.length);
      assert.equal(g.trainableParameters, trainable);
    }
    assert.equal(yaml.dump(readHyp(r.hypFile)).includes('anchors'), false);
  });

  test('bad input', async () => {
    const hyp = path.join(work, 'partial-hyp.yaml');
    fs.writeFileSync(hyp, 'lr0: 0.01\nlrf: 0.01\nmomentum: 0.9\n');
    const missing = HYP_KEYS.filter((k) => !['lr0', 'lrf', 'momentum'].includes(k));
    await assert.rejects(
      evolve(await base({ hyp, name: 'bad' })),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'E_ARG');
        assert.ok(
          e.message.startsWith(`${hyp}: missing hyperparameters weight_decay, `),
          e.message,
        );
        for (const k of missing) assert.ok(e.message.includes(k), k);
        return true;
      },
    );
    // Plain training still takes partial hyp files (the defaults fill in).
    assert.equal(readHyp(hyp).lr0, 0.01);
    await assert.rejects(evolve({ resumeEvolve: path.join(work, 'nowhere') }), {
      code: 'E_FILE',
      message: /evolve_opt\.yaml not found/,
    });
    await assert.rejects(evolve(await base({ generations: 0 })), {
      message: 'Expected integer >= 1 for generations but received 0',
    });
    await assert.rejects(evolve(await base({ parent: 'best' as 'single' })), {
      message: 'Expected single or weighted for parent but received "best"',
    });
    await assert.rejects(evolve(await base({ resume: true })), { message: /resumeEvolve/ });
    // The hyp key anchors needs autoanchor.
    await assert.rejects(train({ ...(await base()), hyp: { anchors: 4 }, noautoanchor: true }), {
      code: 'E_ARG',
      message: /anchors: 4, which autoanchor computes/,
    });
  });

  test('a hyp with anchors: 4 trains 4 anchors per level', async () => {
    const r = await train({
      ...(await base()),
      name: 'anchors4',
      hyp: { anchors: 4 },
      noweights: true,
    });
    assert.equal(r.status, 'completed');
    const anchors = r.model.info().anchors;
    assert.deepEqual(
      anchors.map((l) => l.length),
      [4, 4, 4],
    );
    assert.ok(anchors.flat(2).every((v) => v > 0));
    assert.equal(fs.existsSync(path.join(r.saveDir, 'weights')), false);
  });

  test('epochs without validation (noval, as evolution trains) do not count for patience', async () => {
    const r = await train({
      ...(await base()),
      name: 'patience',
      epochs: 3,
      patience: 1,
      noval: true,
      noweights: true,
      noautoanchor: true,
    });
    assert.equal(r.status, 'completed');
    assert.deepEqual(
      r.epochs.map((e) => e.epoch),
      [0, 1, 2],
    );
    assert.ok(
      r.epochs[2]!.valLoss.every((v) => v > 0),
      'the last epoch is validated',
    );
  });

  test('yolo5 train --evolve / --resume-evolve', async () => {
    const o = await base();
    const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
    const run = (...args: string[]) => {
      const r = spawnSync(process.execPath, [cli, 'train', ...args], {
        encoding: 'utf8',
        env: { ...process.env },
      });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const common = ['--data', data, '--cfg', cfg, '--img', '64', '--batch', '8'];
    const first = run(
      ...common,
      ...['--epochs', '1', '--workers', '1', '--freeze', '10', '--evolve', '1'],
      ...['--project', o.project!, '--name', 'cli'],
    );
    assert.equal(first.code, 0, first.err);
    const dir = path.join(o.project!, 'cli');
    assert.match(first.out, /Freezing \d+ parameter tensors in 10 layers/);
    assert.ok(first.out.includes(`Train with them: yolo5 train --hyp ${dir}/hyp_evolve.yaml`));
    const second = run('--resume-evolve', dir, '--evolve', '2');
    assert.equal(second.code, 0, second.err);
    assert.match(second.out, /Generation 2\/2: \d+ of 29 mutated/);
    assert.equal(
      fs.readFileSync(path.join(dir, 'evolve.csv'), 'utf8').trim().split('\n').length,
      3,
    );
    const bad = run('--evolve', '0');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /Expected integer >= 1 for --evolve but received "0"/);
    const parent = run('--evolve', '--evolve-parent', 'best');
    assert.notEqual(parent.code, 0);
    assert.match(parent.err, /'best' is invalid. Allowed choices are single, weighted/);
    const both = run('--evolve', '2', '--resume');
    assert.equal(both.code, 1);
    assert.match(both.err, /--resume does not combine with --evolve/);
  });
});
