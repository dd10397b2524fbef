#!/usr/bin/env node
// Fails when a C++ file under binding/ is not clang-formatted (the style is .clang-format).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const files = [];
(function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(p);
    else if (/\.(cpp|h)$/.test(entry.name)) files.push(path.relative(root, p));
  }
})(path.join(root, 'binding'));

const r = spawnSync('clang-format', ['--dry-run', '--Werror', ...files], {
  cwd: root,
  encoding: 'utf8',
});
if (r.error) {
  console.error(
    `clang-format-check: cannot run clang-format (${r.error.message}); install it (scripts/setup.sh does)`,
  );
  process.exit(1);
}
if (r.status !== 0) {
  console.error(r.stderr.split('\n').slice(0, 40).join('\n'));
  console.error('clang-format-check: run `npm run format` to fix the files above');
  process.exit(1);
}
console.log(`clang-format-check: ${files.length} files formatted`);
