#!/usr/bin/env node
// Lists functions longer than a limit (default 120 lines) in lib/ (TypeScript, measured with the
// TypeScript compiler's own parse: every function, method, arrow and accessor body) and binding/
// (C++: a top-level or class-member body opened by `) … {` and closed by its matching brace, with
// strings and comments skipped). Exit 1 when any is over the limit.
//   node scripts/function-lengths.js [--limit 120] [--top 20]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const root = path.resolve(__dirname, '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const limit = arg('limit', 120);
const top = arg('top', 0);

function walk(dir, exts, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, exts, out);
    else if (exts.some((x) => p.endsWith(x))) out.push(p);
  }
  return out;
}

function tsFunctions(file) {
  const src = ts.createSourceFile(
    file,
    fs.readFileSync(file, 'utf8'),
    ts.ScriptTarget.ES2022,
    true,
  );
  const out = [];
  const visit = (node) => {
    if (ts.isFunctionLike(node) && node.body) {
      const a = src.getLineAndCharacterOfPosition(node.getStart(src)).line;
      const b = src.getLineAndCharacterOfPosition(node.end).line;
      const name =
        node.name && ts.isIdentifier(node.name)
          ? node.name.text
          : ts.isArrowFunction(node) || ts.isFunctionExpression(node)
            ? '(anonymous)'
            : '(function)';
      out.push({ file, line: a + 1, lines: b - a + 1, name });
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return out;
}

/** C++ with strings, chars and comments blanked out (same length, newlines kept). */
function stripCpp(text) {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const n = text[i + 1];
    if (c === '/' && n === '/') {
      while (i < text.length && text[i] !== '\n') ((out += ' '), i++);
      out += '\n';
    } else if (c === '/' && n === '*') {
      while (i < text.length && !(text[i] === '*' && text[i + 1] === '/'))
        ((out += text[i] === '\n' ? '\n' : ' '), i++);
      out += '  ';
      i++;
    } else if (c === 'R' && n === '"') {
      const open = text.indexOf('(', i);
      const delim = `)${text.slice(i + 2, open)}"`;
      const end = text.indexOf(delim, open) + delim.length;
      for (; i < end; i++) out += text[i] === '\n' ? '\n' : ' ';
      i--;
    } else if (c === '"' || c === "'") {
      out += ' ';
      for (i++; i < text.length && text[i] !== c; i++) {
        if (text[i] === '\\') ((out += ' '), i++);
        out += text[i] === '\n' ? '\n' : ' ';
      }
      out += ' ';
    } else out += c;
  }
  return out;
}

/**
 * C++ function bodies: a `{` whose preceding code (back to the last `;`, `{` or `}`) ends in a
 * parameter list (optionally const/override/noexcept/-> type/initialisers) and is not a control
 * statement, lambda, or a class/namespace/struct/enum head. Lambdas and nested blocks count toward
 * the enclosing function, as a reader sees them.
 */
function cppFunctions(file) {
  const text = stripCpp(fs.readFileSync(file, 'utf8'));
  const out = [];
  const lineAt = (pos) => text.slice(0, pos).split('\n').length;
  let depthInFunction = 0;
  let start = -1;
  let name = '';
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') {
      if (depthInFunction === 0) {
        let j = i - 1;
        while (j >= 0 && !';{}'.includes(text[j])) j--;
        const head = text
          .slice(j + 1, i)
          .replace(/\s+/g, ' ')
          .trim();
        const isHead =
          /\)\s*(const|override|final|noexcept|mutable|\s|->\s*[\w:<>,\s*&]+)*$/.test(head) ||
          /\)\s*:\s*[\s\S]*\)$/.test(head);
        const control = /^(if|for|while|switch|catch|else|do)\b|\[[^\]]*\]\s*\(/.test(head);
        const typeHead = /^(namespace|class|struct|enum|union)\b/.test(head) || /=\s*$/.test(head);
        if (isHead && !control && !typeHead && head.length > 0) {
          start = i;
          depthInFunction = 1;
          const m = head.match(/([~\w:]+)\s*\(/);
          name = m ? m[1] : '(function)';
          continue;
        }
      } else {
        depthInFunction++;
      }
      depth++;
    } else if (c === '}') {
      if (depthInFunction > 0) {
        depthInFunction--;
        if (depthInFunction === 0) {
          const a = lineAt(start);
          out.push({ file, line: a, lines: lineAt(i) - a + 1, name });
        }
      } else depth--;
    }
  }
  return out;
}

const all = [
  ...walk(path.join(root, 'lib'), ['.ts']).flatMap(tsFunctions),
  ...walk(path.join(root, 'binding'), ['.cpp', '.h']).flatMap(cppFunctions),
].sort((a, b) => b.lines - a.lines);
const over = all.filter((f) => f.lines > limit);
const show = (f) =>
  `${String(f.lines).padStart(5)}  ${path.relative(root, f.file)}:${f.line}  ${f.name}`;
if (top > 0) for (const f of all.slice(0, top)) console.log(show(f));
console.log(
  `${all.length} functions in lib/ and binding/; ${over.length} longer than ${limit} lines`,
);
for (const f of over) console.log(show(f));
process.exitCode = over.length > 0 ? 1 : 0;
