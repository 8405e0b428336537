// Copies the onnxruntime-web runtime files emolens ships from the pinned npm package (npm ci first) into
// src/emolens/web/js/ort/, with the licence and a provenance note (version, tarball URL, integrity, sha256 of
// each file). Run: cd js && npm ci && node vendor.mjs
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "node_modules", "onnxruntime-web");
const out = join(here, "..", "src", "emolens", "web", "js", "ort");
const FILES = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const lock = JSON.parse(readFileSync(join(here, "package-lock.json"), "utf8")).packages["node_modules/onnxruntime-web"];
if (lock.version !== pkg.version) throw new Error(`installed ${pkg.version}, package-lock.json pins ${lock.version}: run npm ci`);
mkdirSync(out, { recursive: true });
const tarball = lock.resolved || `https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-${pkg.version}.tgz`;
const jsep = ["ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm"]
  .reduce((n, f) => n + readFileSync(join(pkgDir, "dist", f)).length, 0);
const rows = [];
let total = 0;
for (const f of FILES) {
  const data = readFileSync(join(pkgDir, "dist", f));
  copyFileSync(join(pkgDir, "dist", f), join(out, f));
  total += data.length;
  rows.push(`| \`${f}\` | ${data.length.toLocaleString("en-US")} | \`${createHash("sha256").update(data).digest("hex")}\` |`);
}
writeFileSync(join(out, "LICENSE"), `MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`);
writeFileSync(join(out, "PROVENANCE.md"), `# onnxruntime-web ${pkg.version} (vendored)

The WebAssembly build of ONNX Runtime that runs emolens' models in the browser (\`../emolens.mjs\` imports
\`ort.wasm.min.mjs\`, which loads the other two files from this folder; nothing is fetched from another origin).

- package: \`onnxruntime-web@${pkg.version}\` from the npm registry, licence MIT (declared in its package.json
  and in the header of each file; the tarball carries no separate licence file, so \`LICENSE\` here is the MIT
  licence text with ONNX Runtime's copyright line, Microsoft Corporation)
- tarball: ${tarball}
- integrity (npm, of the tarball): \`${lock.integrity}\`
- pinned in \`js/package.json\` and \`js/package-lock.json\`; copied by \`cd js && npm ci && node vendor.mjs\`
- only the CPU (WebAssembly, SIMD, threads) build is kept: ${(total / 1e6).toFixed(1)} MB. The WebGPU/WebNN
  builds (\`ort-wasm-simd-threaded.jsep.*\`, ${(jsep / 1e6).toFixed(1)} MB more) are left out.
- third-party components inside the WebAssembly build are listed in ONNX Runtime's \`ThirdPartyNotices.txt\`
  (https://github.com/microsoft/onnxruntime/blob/v${pkg.version}/ThirdPartyNotices.txt).

| file | bytes | sha256 |
|---|---:|---|
${rows.join("\n")}
`);
console.log(`copied ${FILES.length} files, ${(total / 1e6).toFixed(2)} MB, into ${out}`);
