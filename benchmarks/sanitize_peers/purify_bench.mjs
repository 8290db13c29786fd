// Times DOMPurify (under jsdom) on the files named on stdin (one path a line).
// Prints JSON: {"version": ..., "per_file_seconds": [...], "output_bytes": [...]}.
// Each file is sanitized `repeat` times and the best time kept, as the Python side does.
// Times are this process's CPU time (user + system, process.cpuUsage), not wall time:
// the benchmark machine is shared, and wall time swings with other jobs.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";
import createDOMPurify from "dompurify";

const repeat = Number(process.argv[2] || "3");
const window = new JSDOM("").window;
const DOMPurify = createDOMPurify(window);
// The SVG profile as its documentation recommends for SVG.
const config = { USE_PROFILES: { svg: true, svgFilters: true } };
const paths = readFileSync(0, "utf8").split("\n").filter(Boolean);
const texts = paths.map((p) => readFileSync(p, "utf8"));
DOMPurify.sanitize(texts[0], config); // warm up the JIT once
const perFile = [];
const outBytes = [];
for (const text of texts) {
  let best = Infinity;
  let out = "";
  for (let i = 0; i < repeat; i++) {
    const t0 = process.cpuUsage();
    out = DOMPurify.sanitize(text, config);
    const d = process.cpuUsage(t0);
    const dt = (d.user + d.system) / 1e6;
    if (dt < best) best = dt;
  }
  perFile.push(best);
  outBytes.push(Buffer.byteLength(out));
}
process.stdout.write(JSON.stringify({ version: DOMPurify.version, per_file_seconds: perFile, output_bytes: outBytes }));
