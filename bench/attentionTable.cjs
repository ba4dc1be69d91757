/**
 * @file The markdown table of bench/attention.sh from its JSON lines (`sdpa {...}` / `kiln {...}`):
 * node bench/attentionTable.cjs attention.jsonl (also on a partial file, after a timeout).
 */
const lines = require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n");
const k = {}, t = {};
for (const l of lines) { const i = l.indexOf(" "); let j; try { j = JSON.parse(l.slice(i + 1)); } catch { continue; } if (l.slice(0, i) === "kiln") k[j.shape + (j.variant ? " " + j.variant : "")] = j; else t[j.shape] = j; }
console.log("| B,H,S,D | Kiln fwd ms | Kiln bwd ms | Kiln TFLOP/s | SDPA fwd ms | SDPA bwd ms | SDPA TFLOP/s | Kiln / SDPA throughput | fwd, bwd alone |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const s of Object.keys(k)) { const a = k[s], b = t[a.shape] ?? {}; console.log(`| ${s} | ${a.fwdMs} | ${a.bwdMs} | ${a.totalTflops} | ${b.fwdMs} | ${b.bwdMs} | ${b.totalTflops} | ${(b.totalMs / a.totalMs * 100).toFixed(0)}% | ${(b.fwdMs / a.fwdMs * 100).toFixed(0)}%, ${(b.bwdMs / a.bwdMs * 100).toFixed(0)}% |`); }
