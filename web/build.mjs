// Builds the dashboard into dist/: index.html naming content-hashed assets (app.<hash>.js,
// app.<hash>.css, favicon.<hash>.svg) in dist/assets/, each also gzipped (<name>.gz) for clients
// that accept it. The API serves dist/ (API_WEB_DIR): the page with `no-cache`, the assets as
// immutable. Run through scripts/build-web.sh, which installs the locked dependencies first.
//
//   node build.mjs            # production build into dist/
//   node build.mjs --out DIR  # elsewhere

import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const outFlag = process.argv.indexOf('--out');
const out = outFlag > 0 ? process.argv[outFlag + 1] : join(here, 'dist');
const assets = join(out, 'assets');

await rm(out, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

const result = await esbuild.build({
  entryPoints: [join(here, 'src/app.js'), join(here, 'src/app.css')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  entryNames: '[name].[hash]',
  outdir: assets,
  metafile: true,
  legalComments: 'eof',
  logLevel: 'warning',
});

/** Output file names by the source they were built from: app.js -> app.<hash>.js. */
const names = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) names[basename(meta.entryPoint)] = basename(file);
}

const favicon = await readFile(join(here, 'src/favicon.svg'));
names['favicon.svg'] = `favicon.${hash(favicon)}.svg`;
await writeFile(join(assets, names['favicon.svg']), favicon);

let html = await readFile(join(here, 'src/index.html'), 'utf8');
html = html.replace(/\{\{([\w.]+)\}\}/g, (_, key) => {
  if (!names[key]) throw new Error(`index.html names {{${key}}}, which the build did not produce`);
  return names[key];
});
await writeFile(join(out, 'index.html'), html);

let total = 0;
const lines = [];
for (const file of [join(out, 'index.html'), ...(await readdir(assets)).map((name) => join(assets, name))]) {
  const body = await readFile(file);
  const gzipped = gzipSync(body, { level: 9 });
  await writeFile(`${file}.gz`, gzipped);
  total += gzipped.length;
  lines.push(`  ${file.slice(out.length + 1).padEnd(32)} ${String(body.length).padStart(8)} B, gzip ${String(gzipped.length).padStart(7)} B`);
}
console.log(`web build in ${out}:\n${lines.join('\n')}\n  total gzipped: ${total} B`);

/** The first 10 hex digits of the content's SHA-256, like esbuild's own hashes in spirit. */
function hash(bytes) {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 10);
}

