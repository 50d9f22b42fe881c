// Builds the dashboard into ../sysadmd/web/static: hashed, minified assets, the page
// that names them, and .gz/.br siblings the daemon sends to clients that accept them.
import { build } from "esbuild";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "sysadmd", "web", "static");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await build({
  entryPoints: [join(here, "src", "main.ts")],
  bundle: true,
  splitting: true,
  format: "esm",
  minify: true,
  target: ["chrome110", "firefox110", "safari16"],
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  legalComments: "eof",
  banner: { js: "/*! Licences of the bundled packages: ../licenses.txt */" },
  logLevel: "warning",
});

let script = "";
let style = "";
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint === "src/main.ts" || meta.entryPoint?.endsWith("src/main.ts")) {
    script = relative(out, join(here, file));
    if (meta.cssBundle) style = relative(out, join(here, meta.cssBundle));
  }
}
if (!script) throw new Error("the build produced no entry script");

const page = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("%SCRIPT%", script)
  .replace("%STYLE%", style);
writeFileSync(join(out, "index.html"), page);

// The packages bundled into the assets, each with its licence text, in licenses.txt
// (minified builds of xterm.js carry no notice of their own; the MIT licence asks for it).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const found = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (found) packages.set(found[1], join(here, "node_modules", found[1]));
}
let notices = "Third-party software in the sysadmd dashboard's assets\n";
for (const [name, dir] of [...packages].sort()) {
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const licence = ["LICENSE", "LICENSE.md", "LICENSE.txt", "license"]
    .map((file) => join(dir, file))
    .find((file) => existsSync(file));
  if (!licence) throw new Error(`${name} ships no licence file`);
  notices += `\n==== ${name} ${meta.version} (${meta.license}) ====\n\n${readFileSync(licence, "utf8")}`;
}
writeFileSync(join(out, "licenses.txt"), notices);

const files = [join(out, "index.html"), ...Object.keys(result.metafile.outputs).map((f) => join(here, f))];
let total = 0;
for (const file of files) {
  const body = readFileSync(file);
  if (body.length < 256) continue;
  const br = brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
  writeFileSync(file + ".gz", gzipSync(body, { level: 9 }));
  writeFileSync(file + ".br", br);
  total += br.length;
  console.log(`${relative(out, file)}: ${body.length} bytes, ${br.length} with brotli`);
}
console.log(`built ${basename(out)}: ${total} bytes compressed in all`);
