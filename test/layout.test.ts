/**
 * The architecture as a test: lib/ is topic folders whose imports point one way (README, "Where
 * things live"), no two folders import each other, and only a handful of files sit loose in lib/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

const LIB = path.resolve(__dirname, '..', '..', 'lib');

/** Rank of each part: a file may import only from parts of a lower rank, or its own folder. */
const RANK: Record<string, number> = {
  'errors.ts': 0,
  'options.ts': 1,
  native: 2,
  config: 3,
  checkpoint: 3,
  data: 3,
  report: 3,
  model: 4,
  train: 5,
  val: 5,
  predict: 5,
  export: 5,
  'index.ts': 6,
  cli: 7,
};

function walk(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function partOf(file: string): string {
  return path.relative(LIB, file).split(path.sep)[0]!;
}

/** Relative imports of a file (value and type imports alike), resolved to files. */
function importsOf(file: string): string[] {
  const src = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/(?:from\s+|import\(\s*|require\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const base = path.resolve(path.dirname(file), m[1]!);
    const hit = [`${base}.ts`, path.join(base, 'index.ts')].find((c) => fs.existsSync(c));
    assert.ok(hit, `${path.relative(LIB, file)} imports ${m[1]}, which does not exist`);
    out.push(hit);
  }
  return out;
}

test('lib/ holds at most 8 loose files and every folder has a rank', () => {
  const loose = fs.readdirSync(LIB).filter((f) => f.endsWith('.ts'));
  assert.ok(loose.length <= 8, `loose files in lib/: ${loose.join(' ')}`);
  for (const part of fs.readdirSync(LIB)) {
    assert.ok(
      part in RANK,
      `lib/${part} has no place in the dependency rule (test/layout.test.ts)`,
    );
  }
});

test('imports follow the dependency rule: cli → index → {train, val, predict, export} → model → {config, checkpoint, data, report} → native', () => {
  const bad: string[] = [];
  const folderEdges = new Set<string>();
  for (const file of walk(LIB)) {
    const from = partOf(file);
    for (const target of importsOf(file)) {
      const to = partOf(target);
      if (to === from) continue;
      folderEdges.add(`${from}→${to}`);
      // Peers of one rank may use each other (train runs val), but never both ways (below).
      if (RANK[to]! > RANK[from]!)
        bad.push(`${path.relative(LIB, file)} → ${path.relative(LIB, target)}`);
    }
  }
  for (const e of folderEdges) {
    const [a, b] = e.split('→');
    if (folderEdges.has(`${b}→${a}`)) bad.push(`${a} and ${b} import each other`);
  }
  assert.deepEqual([...new Set(bad)], []);
});

test('no import cycles between files', () => {
  const graph = new Map(walk(LIB).map((f) => [f, importsOf(f)]));
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, stack: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push(
        [...stack.slice(stack.indexOf(f)), f].map((x) => path.relative(LIB, x)).join(' → '),
      );
      return;
    }
    state.set(f, 'open');
    for (const t of graph.get(f) ?? []) visit(t, [...stack, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  assert.deepEqual(cycles, []);
});

/** The same rule for the addon's C++: addon → {train, infer} → {loss, model, data, ops} → kernels. */
const CPP_RANK: Record<string, number> = {
  kernels: 0,
  ops: 1,
  data: 1,
  model: 1,
  loss: 1,
  train: 2,
  infer: 2,
  addon: 3,
  preload: 3,
};

test('binding/ includes follow addon → {train, infer} → {loss, model, data, ops} → kernels', () => {
  const BINDING = path.resolve(LIB, '..', 'binding');
  const bad: string[] = [];
  const edges = new Set<string>();
  for (const part of fs.readdirSync(BINDING, { withFileTypes: true })) {
    if (!part.isDirectory()) continue;
    assert.ok(part.name in CPP_RANK, `binding/${part.name} has no place in the include rule`);
    for (const f of fs.readdirSync(path.join(BINDING, part.name))) {
      const src = fs.readFileSync(path.join(BINDING, part.name, f), 'utf8');
      for (const m of src.matchAll(/#include "([a-z_]+)\/[^"]+"/g)) {
        const to = m[1]!;
        if (to === part.name) continue;
        edges.add(`${part.name}→${to}`);
        if (!(to in CPP_RANK) || CPP_RANK[to]! > CPP_RANK[part.name]!)
          bad.push(`binding/${part.name}/${f} includes ${m[1]}/`);
      }
    }
  }
  for (const e of edges) {
    const [a, b] = e.split('→');
    if (edges.has(`${b}→${a}`)) bad.push(`binding/${a} and binding/${b} include each other`);
  }
  assert.deepEqual([...new Set(bad)], []);
});
