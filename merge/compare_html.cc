// RenderCompareHtml: the `alloy compare --html` page.
//
// The page is one file that must open anywhere (a CI artifact, an e-mail
// attachment, a docs screenshot), so it has no external assets: the CSS and a
// vanilla-JS renderer are inlined, and the report itself is embedded as JSON
// in a <script type="application/json"> element that the renderer parses.
// All drawing happens in the browser from that JSON, so the C++ side only has
// to make the JSON safe to embed; the JS inserts report strings as text or
// through esc(), never as markup.
//
// The JS signals completion through document.body.dataset.rendered ("ok", or
// "error: <message>" from window.onerror); the headless-Chromium test
// (tests/cli/chromium_render_check.sh) reads that attribute.
#include <string>
#include <string_view>

#include "merge/compare.h"

namespace alloy::merge {
namespace {

// ---- page skeleton ----
// The Content-Security-Policy forbids every network fetch, so even a bug in
// the renderer cannot make the page load anything: inline style and script
// only, images only from data: URIs.
constexpr std::string_view kPageHead = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline';
               img-src data:">
<title>alloy compare</title>
<style>
)html";

constexpr std::string_view kStyle = R"css(
:root {
  --bg: #f4f5f7; --card: #fff; --ink: #1c2230; --muted: #5d6878; --line: #e1e5eb;
  --soft: #f0f2f5; --accent: #2f6db5; --null: #d5d8de;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        sans-serif;
}
main { max-width: 1360px; margin: 0 auto; padding: 22px 28px 48px; }
h1 { font-size: 24px; margin: 0; letter-spacing: -0.01em; }
h2 { font-size: 15px; margin: 0; font-weight: 650; }
h3 { font-size: 13.5px; margin: 0; font-weight: 600; }
code, pre, .mono {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px;
}
.top { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; }
.sub { color: var(--muted); font-size: 12.5px; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 20px 18px; margin-top: 16px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.04);
}
.card > h2, .bar { margin-bottom: 12px; }
.bar { display: flex; align-items: center; gap: 10px 18px; flex-wrap: wrap; }
.bar label { color: var(--muted); font-size: 12.5px; display: flex; align-items: center; gap: 6px; }
select, input[type=search] {
  font: inherit; font-size: 13px; padding: 4px 8px; border: 1px solid #cfd5dd; border-radius: 6px;
  background: #fff; color: var(--ink);
}
input[type=search] { width: 280px; }
.empty {
  color: var(--muted); background: var(--soft); border-radius: 8px; padding: 14px 16px;
  margin: 0; font-style: italic;
}
.error {
  background: #fdecec; color: #8a1c1c; border: 1px solid #f1b7b7; border-radius: 8px;
  padding: 12px 16px; margin-bottom: 12px; font-weight: 600; white-space: pre-wrap;
}
/* overview */
.overview { display: grid; grid-template-columns: minmax(260px, 1fr) 2fr; gap: 12px 32px; }
.overview h3 { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.04em; margin-bottom: 6px; }
.models {
  display: grid; grid-template-columns: max-content 1fr; gap: 5px 10px; align-items: center;
}
.models code { word-break: break-all; }
.badge {
  display: inline-block; min-width: 24px; padding: 1px 8px; border-radius: 10px; text-align: center;
  background: #e3ecf8; color: #1d3b63; font-weight: 650; font-size: 12px;
}
.badge.base { background: #f3ebdc; color: #5b4214; }
pre.cmd {
  background: var(--soft); border-radius: 6px; padding: 9px 12px; margin: 0;
  white-space: pre-wrap; word-break: break-all;
}
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 16px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 7px 14px; min-width: 120px; }
.stat .v { font-size: 19px; font-weight: 650; font-variant-numeric: tabular-nums; }
.stat .l { color: var(--muted); font-size: 12px; }
.stat.warn { border-color: #f0c98b; background: #fff8ec; }
.stat a { color: inherit; text-decoration: none; }
/* tables */
table { border-collapse: collapse; }
.figs-wrap { display: flex; flex-wrap: wrap; gap: 0 48px; margin-top: 14px; }
.figs { font-size: 13px; font-variant-numeric: tabular-nums; }
.figs th, .figs td {
  padding: 4px 14px 4px 0; text-align: left; border-bottom: 1px solid var(--soft);
}
.figs th { font-weight: 500; }
.figs td .sl, .chip .sl { color: var(--muted); font-size: 11.5px; margin-right: 6px; }
.figs .dir { color: var(--muted); font-size: 11.5px; font-weight: 400; }
/* heatmap */
.heat-wrap { overflow-x: auto; }
table.heat { font-size: 11.5px; font-variant-numeric: tabular-nums; }
table.heat th { font-weight: 600; color: var(--muted); padding: 2px 6px; white-space: nowrap; }
table.heat thead th { padding-bottom: 6px; }
table.heat tbody th { text-align: right; padding-right: 10px; }
table.heat td {
  min-width: 76px; height: 24px; padding: 0 6px; text-align: center; white-space: nowrap;
  border: 2px solid #fff; border-radius: 4px; cursor: default;
}
table.heat.compact td { height: 17px; font-size: 10.5px; }
table.heat td.null { background: var(--null); color: #6a717c; }
table.heat td.absent { background: #fafbfc; }
table.heat tr.other th { font-style: italic; }
table.heat tr.other td, table.heat tr.other th { border-bottom: 8px solid #fff; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 12px; color: var(--muted); }
.legend .ramp { width: 220px; height: 12px; border-radius: 3px; border: 1px solid var(--line); }
.legend .nullbox {
  display: inline-block; width: 16px; height: 12px; background: var(--null); border-radius: 3px;
  vertical-align: middle; margin: 0 4px 0 10px;
}
.legend .num { color: var(--ink); font-variant-numeric: tabular-nums; }
#metric-desc { margin: -4px 0 12px; }
/* charts */
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 14px; }
.chart { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px 6px; }
.chart.selected { border-color: #9bbbe3; box-shadow: 0 0 0 2px #e3ecf8; }
.chart h3 { cursor: pointer; }
.chart h3:hover { color: var(--accent); }
.chart .keys {
  display: flex; flex-wrap: wrap; gap: 2px 12px; font-size: 11.5px; color: var(--muted);
  margin: 3px 0 2px;
}
.chart .sw {
  display: inline-block; width: 14px; height: 3px; border-radius: 2px; vertical-align: middle;
  margin-right: 5px;
}
.chart svg { display: block; width: 100%; height: auto; }
.chart svg text { font-size: 11px; fill: #5d6878; font-variant-numeric: tabular-nums; }
.chart svg .grid { stroke: #eceff3; }
.chart svg .axis { stroke: #b9c0ca; }
.chart svg path.line {
  fill: none; stroke-width: 1.8; stroke-linejoin: round; stroke-linecap: round;
}
.chart .none {
  color: var(--muted); font-style: italic; font-size: 12.5px; padding: 30px 0; text-align: center;
}
/* tensor table */
.tt-wrap { max-height: 640px; overflow: auto; border: 1px solid var(--line); border-radius: 8px; }
table.tt { font-size: 12px; font-variant-numeric: tabular-nums; width: 100%; }
table.tt th {
  position: sticky; top: 0; z-index: 1; background: #f6f7f9; text-align: left; font-weight: 600;
  padding: 6px 10px; border-bottom: 1px solid var(--line); cursor: pointer; user-select: none;
  white-space: nowrap; vertical-align: bottom;
}
table.tt th:hover { background: #eceff3; }
table.tt th .s { display: block; font-weight: 400; color: var(--muted); font-size: 11px; }
table.tt th[data-sort=asc]::after { content: " \25B2"; font-size: 9px; color: var(--accent); }
table.tt th[data-sort=desc]::after { content: " \25BC"; font-size: 9px; color: var(--accent); }
table.tt td { padding: 3px 10px; border-bottom: 1px solid var(--soft); white-space: nowrap; }
table.tt td.n { text-align: right; }
table.tt td.z { color: #a0a7b1; }
table.tt td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 11.5px; }
table.tt tbody tr:hover td { background: #f5f8fc; }
.more { margin-top: 10px; display: flex; gap: 8px; }
.more button {
  font: inherit; font-size: 12.5px; padding: 4px 12px; border: 1px solid #cfd5dd;
  border-radius: 6px; background: #fff; color: var(--accent); cursor: pointer;
}
.more button:hover { background: #f0f5fb; }
/* mismatches and warnings */
table.mm { font-size: 12.5px; width: 100%; }
table.mm th, table.mm td {
  text-align: left; padding: 4px 12px 4px 0; border-bottom: 1px solid var(--soft);
  vertical-align: top;
}
table.mm th { color: var(--muted); font-weight: 600; }
table.mm td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  word-break: break-all; }
ul.warnings { margin: 0; padding-left: 20px; }
ul.warnings li { margin: 2px 0; }
@media (max-width: 820px) { .overview { grid-template-columns: 1fr; } }
)css";

// The sections the renderer fills; static text only, so nothing here depends
// on the report.
constexpr std::string_view kBody = R"html(</style>
</head>
<body>
<main>
<div id="render-error" class="error" hidden></div>
<div class="top"><h1>alloy compare</h1><span class="sub" id="meta"></span></div>
<section class="card" id="overview">
  <div class="overview">
    <div><h3>Models</h3><div id="models" class="models"></div></div>
    <div><h3>Command</h3><pre id="command" class="cmd"></pre></div>
  </div>
  <div id="stats" class="stats"></div>
  <div id="summary"></div>
</section>
<section class="card" id="heatmap-card">
  <div class="bar">
    <h2>Layer &times; module</h2>
    <label>metric <select id="metric"></select></label>
    <label>series <select id="series"></select></label>
    <div id="legend" class="legend"></div>
  </div>
  <p id="metric-desc" class="sub"></p>
  <div id="heatmap" class="heat-wrap"></div>
</section>
<section class="card" id="charts-card">
  <div class="bar">
    <h2>Across layers</h2>
    <span class="sub">per-layer figures; click a title to show that metric in the heatmap</span>
  </div>
  <div id="charts"></div>
</section>
<section class="card" id="tensors-card">
  <div class="bar">
    <h2>Tensors</h2>
    <input id="filter" type="search" placeholder="filter by name" autocomplete="off">
    <span id="tensor-count" class="sub"></span>
  </div>
  <div id="tensors"></div>
</section>
<section class="card" id="mismatch-card" hidden>
  <h2>Not compared</h2><div id="mismatches"></div>
</section>
<section class="card" id="warning-card" hidden>
  <h2>Warnings</h2><ul id="warnings" class="warnings"></ul>
</section>
</main>
<script type="application/json" id="alloy-report">)html";

constexpr std::string_view kScriptStart = R"html(</script>
<script>
)html";

// ---- renderer, part 1: error reporting, data access, formatting, colour ----
// Wrapped in one function so no name collides with a window property (a
// top-level `let top` is a SyntaxError). Non-ASCII output characters are
// written as \u escapes so this source stays ASCII.
constexpr std::string_view kScriptCore = R"js(
'use strict';
window.onerror = function (message, source, line, column, error) {
  const text = (error && error.message) || String(message);
  document.body.dataset.rendered = 'error: ' + text;
  const box = document.getElementById('render-error');
  if (box) {
    box.hidden = false;
    box.textContent = 'The report could not be drawn: ' + text +
                      (line ? ' (script line ' + line + ')' : '');
  }
  return false;  // keep the browser's own console message: the render test reads the log
};

(function () {
const DASH = '\u2013', TIMES = '\u00d7', DOT = ' \u00b7 ';
const $ = (id) => document.getElementById(id);
const arr = (x) => (Array.isArray(x) ? x : []);
const obj = (x) => (x && typeof x === 'object' && !Array.isArray(x) ? x : {});
const num = (x) => (typeof x === 'number' && isFinite(x) ? x : null);
const str = (x) => (x == null ? '' : String(x));
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => str(s).replace(/[&<>"']/g, (c) => ESC[c]);

function readReport() {
  const parsed = JSON.parse($('alloy-report').textContent);
  return obj(parsed);
}
const report = readReport();
const metrics = arr(report.metrics).filter((m) => m && typeof m.key === 'string');
const models = arr(report.models).map(obj);
const base = report.base ? obj(report.base) : null;
const cells = arr(report.cells).map(obj);
const tensors = arr(report.tensors).map(obj);

// values[key][s], or null for anything that is not a finite number. Own
// properties only, so a metric key like "constructor" cannot reach the prototype.
function valueOf(values, key, s) {
  const o = obj(values);
  if (!Object.prototype.hasOwnProperty.call(o, key)) return null;
  const a = o[key];
  return Array.isArray(a) ? num(a[s]) : null;
}
// The series labels of a metric; falls back to numbering the summary's
// values when the report has no label list for the metric's kind.
function seriesLabels(m) {
  const labels = arr(obj(report.series)[m.series]).map(str);
  if (labels.length) return labels;
  const a = obj(obj(report.summary).values)[m.key];
  return Array.isArray(a) ? a.map((_, i) => '#' + (i + 1)) : [];
}

// ~5 significant digits, an exponent for very small or large magnitudes,
// trailing zeros dropped.
function fmt(v, digits) {
  v = num(v);
  if (v === null) return DASH;
  if (v === 0) return '0';
  const d = digits || 5;
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(Math.max(0, d - 1)).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(d)));
}
function fmtInt(v) {
  v = num(v);
  if (v === null) return DASH;
  return String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
function fmtHuman(v) {
  v = num(v);
  if (v === null) return DASH;
  const units = [[1e12, ' T'], [1e9, ' B'], [1e6, ' M'], [1e3, ' K']];
  for (const [scale, unit] of units) {
    if (Math.abs(v) >= scale) return Number((v / scale).toPrecision(3)) + unit;
  }
  return String(v);
}
// Enough digits that the smallest and largest shown values differ in print
// (cosines of 0.9991 and 0.9998 must not both read "1").
function digitsFor(lo, hi) {
  const mag = Math.max(Math.abs(lo), Math.abs(hi)), span = hi - lo;
  if (!(span > 0) || !(mag > 0)) return 3;
  return Math.min(6, Math.max(3, Math.ceil(Math.log10(mag / span)) + 2));
}
const plural = (n, word) => fmtInt(n) + ' ' + word + (n === 1 ? '' : 's');
function shapeText(shape) {
  return Array.isArray(shape) ? (shape.length ? shape.map(str).join(TIMES) : 'scalar') : DASH;
}
// "bf16" when all models agree, else "bf16/f16/bf16".
function dtypesText(dtypes) {
  const d = arr(dtypes).map((x) => (x == null ? DASH : str(x)));
  if (!d.length) return DASH;
  return d.every((x) => x === d[0]) ? d[0] : d.join('/');
}
function betterText(better) {
  return better > 0 ? 'higher is better' : better < 0 ? 'lower is better' : 'no better direction';
}

// Colour scales. With a direction (better = +1/-1) a diverging red-white-blue
// scale whose red end is the worse end; without one a sequential yellow-blue
// scale from low to high. Both are colour-blind safe (ColorBrewer RdBu/YlGnBu).
const DIVERGING = ['#b2182b', '#d6604d', '#f4a582', '#f7f7f7', '#92c5de', '#4393c3', '#2166ac'];
const SEQUENTIAL = ['#ffffcc', '#c7e9b4', '#7fcdbb', '#41b6c4', '#1d91c0', '#225ea8', '#0c2c84'];
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#76b7b2', '#edc948',
                 '#9c755f', '#ff9da7', '#bab0ac'];
const hexRgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
function ramp(stops, t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const a = hexRgb(stops[i]), b = hexRgb(stops[i + 1]);
  return a.map((v, k) => Math.round(v + (b[k] - v) * f));
}
const rgb = (c) => 'rgb(' + c.join(',') + ')';
const inkOn = (c) => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 150 ? '#1c2230' : '#fff');
function makeScale(metric, lo, hi) {
  const better = num(metric.better) || 0;
  const stops = better === 0 ? SEQUENTIAL : DIVERGING;
  const span = hi - lo;
  return (v) => {
    const u = span > 0 ? (v - lo) / span : 0.5;
    return ramp(stops, better < 0 ? 1 - u : u);
  };
}

// Axis ticks at 1, 2 or 5 times a power of ten.
function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.01 || 1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / count);
  const start = Math.floor(lo / step + 1e-9) * step, end = Math.ceil(hi / step - 1e-9) * step;
  const ticks = [];
  for (let i = 0; i <= 60; ++i) {
    const v = start + i * step;
    if (v > end + step * 1e-6) break;
    ticks.push(v);
  }
  return { ticks: ticks, lo: start, hi: end, step: step };
}
function fmtTick(v, step) {
  if (Math.abs(v) < step * 1e-6) return '0';
  const mag = Math.max(Math.abs(v), step);
  if (mag >= 1e6 || mag < 1e-3) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return v.toFixed(Math.min(12, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9))));
}
)js";

// ---- renderer, part 2: the sections ----
constexpr std::string_view kScriptViews = R"js(
function emptyNote(text) {
  return '<p class="empty">' + esc(text) + '</p>';
}

// Header: version line, models, command, counts and whole-model figures.
function renderOverview() {
  const meta = [str(report.format) || 'alloy-compare'];
  if (report.alloy_version) meta.push('alloy ' + str(report.alloy_version));
  if (num(report.rank) > 0) meta.push('spectrum k = ' + report.rank);
  $('meta').textContent = meta.join(DOT);

  let html = '';
  for (const m of models) {
    html += '<span class="badge">' + esc(m.label) + '</span><code>' + esc(m.path) + '</code>';
  }
  if (base) {
    html += '<span class="badge base">' + esc(base.label || 'base') + '</span><code>' +
            esc(base.path) + '</code>';
  }
  $('models').innerHTML = html || emptyNote('no models listed');
  $('command').textContent = str(report.command) || DASH;

  const sm = obj(report.summary);
  const mismatches = arr(report.mismatches), warnings = arr(report.warnings);
  const stat = (v, l, extra, title) =>
      '<div class="stat' + (extra || '') + '"' + (title ? ' title="' + esc(title) + '"' : '') +
      '><div class="v">' + v + '</div><div class="l">' + l + '</div></div>';
  let stats = stat(esc(fmtInt(sm.tensors)), 'tensors compared');
  stats += stat(esc(fmtHuman(sm.numel)), 'elements', '', fmtInt(sm.numel) + ' elements');
  stats += stat(esc(fmtInt(num(report.layers) || 0)), 'numbered layers');
  stats += stat(esc(fmtInt(models.length)), base ? 'models + base' : 'models');
  if (mismatches.length) {
    stats += stat('<a href="#mismatch-card">' + esc(fmtInt(mismatches.length)) + '</a>',
                  'not compared', ' warn');
  }
  if (warnings.length) {
    stats += stat('<a href="#warning-card">' + esc(fmtInt(warnings.length)) + '</a>',
                  warnings.length === 1 ? 'warning' : 'warnings', ' warn');
  }
  $('stats').innerHTML = stats;

  if (!metrics.length) {
    $('summary').innerHTML = '';
    return;
  }
  let width = 0;
  for (const m of metrics) width = Math.max(width, seriesLabels(m).length);
  // Whole-model figures: two tables side by side when there are many metrics,
  // so the header stays short.
  const half = metrics.length > 6 ? Math.ceil(metrics.length / 2) : metrics.length;
  let figs = '<div class="figs-wrap">';
  metrics.forEach((m, i) => {
    if (i === half) figs += '</tbody></table>';
    if (i === 0 || i === half) figs += '<table class="figs"><tbody>';
    const labels = seriesLabels(m);
    figs += '<tr><th title="' + esc(m.description) + '">' + esc(m.label || m.key) +
            ' <span class="dir">' + esc(betterText(num(m.better) || 0)) + '</span></th>';
    for (let s = 0; s < width; ++s) {
      if (s >= labels.length) {
        figs += '<td></td>';
        continue;
      }
      const v = valueOf(obj(report.summary).values, m.key, s);
      figs += '<td title="' + esc(v === null ? 'no value' : String(v)) + '"><span class="sl">' +
              esc(labels[s]) + '</span>' + esc(fmt(v)) + '</td>';
    }
    figs += '</tr>';
  });
  $('summary').innerHTML = figs + '</tbody></table></div>';
}

// ---- heatmap ----
const selected = { metric: 0, series: 0 };

function heatLayout() {
  const kindOrder = arr(report.kinds).map(str);
  const present = new Set(cells.map((c) => str(c.kind)));
  const kinds = kindOrder.filter((k) => present.has(k));
  for (const k of present) if (!kinds.includes(k)) kinds.push(k);
  const layers = new Set();
  let other = false;
  const n = Math.max(0, Math.floor(num(report.layers) || 0));
  for (let i = 0; i < n && i < 100000; ++i) layers.add(i);
  const byKey = new Map();
  for (const c of cells) {
    const layer = num(c.layer);
    if (layer === null) other = true; else layers.add(layer);
    byKey.set((layer === null ? 'other' : layer) + '|' + str(c.kind), c);
  }
  const rows = [...layers].sort((a, b) => a - b);
  // Tensors outside the numbered layers (embeddings, final norm, head) first,
  // in the report's order.
  if (other) rows.unshift('other');
  return { kinds: kinds, rows: rows, byKey: byKey };
}
const layout = heatLayout();

function fillSeriesSelect() {
  const m = metrics[selected.metric];
  const labels = m ? seriesLabels(m) : [];
  if (selected.series >= labels.length) selected.series = 0;
  $('series').innerHTML = labels.map((l, i) =>
      '<option value="' + i + '"' + (i === selected.series ? ' selected' : '') + '>' + esc(l) +
      '</option>').join('');
  $('series').disabled = labels.length <= 1;
}

function renderHeatmap() {
  const box = $('heatmap'), legend = $('legend'), desc = $('metric-desc');
  const m = metrics[selected.metric];
  for (const card of document.querySelectorAll('.chart')) {
    card.classList.toggle('selected', Number(card.dataset.metric) === selected.metric);
  }
  if (!m) {
    legend.innerHTML = '';
    desc.textContent = '';
    box.innerHTML = emptyNote('Nothing to show: the report has no metrics.');
    return;
  }
  desc.textContent = str(m.description) + (m.description ? ' ' : '') + '(' +
                     betterText(num(m.better) || 0) + ')';
  if (!cells.length || !layout.kinds.length) {
    legend.innerHTML = '';
    box.innerHTML = emptyNote('Nothing to show: the report has no layer \u00d7 module cells.');
    return;
  }
  const s = selected.series, label = seriesLabels(m)[s] || '';
  let lo = Infinity, hi = -Infinity;
  for (const c of cells) {
    const v = valueOf(c.values, m.key, s);
    if (v !== null) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  const any = lo <= hi;
  const color = any ? makeScale(m, lo, hi) : null;
  const digits = any ? digitsFor(lo, hi) : 3;

  if (any) {
    const stops = [];
    for (let i = 0; i <= 8; ++i) stops.push(rgb(color(lo + (hi - lo) * i / 8)));
    const better = num(m.better) || 0;
    legend.innerHTML = '<span class="num">' + esc(fmt(lo, digits)) + '</span>' +
        '<span class="ramp" style="background:linear-gradient(to right,' + stops.join(',') +
        ')"></span><span class="num">' + esc(fmt(hi, digits)) + '</span>' +
        '<span>' + (better !== 0 ? 'red = worse' : '') +
        '</span><span class="nullbox"></span>no value';
  } else {
    legend.innerHTML = '';
  }

  let html = '<table class="heat' + (layout.rows.length > 40 ? ' compact' : '') +
             '"><thead><tr><th>layer</th>';
  for (const k of layout.kinds) html += '<th>' + esc(k) + '</th>';
  html += '</tr></thead><tbody>';
  for (const row of layout.rows) {
    html += '<tr' + (row === 'other' ? ' class="other"' : '') + '><th>' + esc(row) + '</th>';
    for (const k of layout.kinds) {
      const c = layout.byKey.get(row + '|' + k);
      if (!c) {
        html += '<td class="absent"></td>';
        continue;
      }
      const v = valueOf(c.values, m.key, s);
      const title = (row === 'other' ? 'outside the layers' : 'layer ' + row) + DOT + k + '\n' +
                    (m.label || m.key) + (label ? ' (' + label + ')' : '') + ': ' +
                    (v === null ? 'no value' : String(v)) + '\n' +
                    plural(num(c.tensors) || 0, 'tensor') + DOT + fmtInt(c.numel) + ' elements';
      if (v === null) {
        html += '<td class="null" title="' + esc(title) + '">' + DASH + '</td>';
      } else {
        const bg = color(v);
        html += '<td style="background:' + rgb(bg) + ';color:' + inkOn(bg) + '" title="' +
                esc(title) + '">' + esc(fmt(v, digits)) + '</td>';
      }
    }
    html += '</tr>';
  }
  box.innerHTML = html + '</tbody></table>' +
      (any ? '' : emptyNote('No values for ' + (m.label || m.key) + ' (' + label + ').'));
}

function setupSelectors() {
  $('metric').innerHTML = metrics.map((m, i) =>
      '<option value="' + i + '">' + esc(m.label || m.key) + '</option>').join('');
  $('metric').disabled = metrics.length === 0;
  fillSeriesSelect();
  $('metric').addEventListener('change', (e) => {
    selected.metric = Number(e.target.value);
    fillSeriesSelect();
    renderHeatmap();
  });
  $('series').addEventListener('change', (e) => {
    selected.series = Number(e.target.value);
    renderHeatmap();
  });
}

// ---- line charts across layers (report.layers_values: exact per-layer figures) ----
function chartSvg(m, labels, entries) {
  const W = 440, H = 220, L = 54, R = 12, T = 10, B = 30;
  let lo = Infinity, hi = -Infinity;
  for (const e of entries) {
    for (let s = 0; s < labels.length; ++s) {
      const v = valueOf(e.values, m.key, s);
      if (v !== null) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  if (!(lo <= hi)) return '';
  const y = niceTicks(lo, hi, 4);
  const first = Math.min(0, entries[0].layer);
  let last = Math.max(entries[entries.length - 1].layer, (num(report.layers) || 0) - 1);
  if (last <= first) last = first + 1;
  const sx = (v) => L + (v - first) / (last - first) * (W - L - R);
  const sy = (v) => T + (y.hi - v) / (y.hi - y.lo) * (H - T - B);
  const f1 = (v) => v.toFixed(1);
  let svg = '<svg viewBox="0 0 ' + W + ' ' + H + '" role="img" aria-label="' +
            esc(m.label || m.key) + ' across layers">';
  for (const t of y.ticks) {
    svg += '<line class="grid" x1="' + L + '" x2="' + (W - R) + '" y1="' + f1(sy(t)) + '" y2="' +
           f1(sy(t)) + '"/><text x="' + (L - 6) + '" y="' + f1(sy(t) + 3.5) +
           '" text-anchor="end">' + esc(fmtTick(t, y.step)) + '</text>';
  }
  const xstep = Math.max(1, Math.round(niceStep((last - first) / 8)));
  for (let t = Math.ceil(first / xstep) * xstep; t <= last; t += xstep) {
    svg += '<line class="axis" x1="' + f1(sx(t)) + '" x2="' + f1(sx(t)) + '" y1="' + (H - B) +
           '" y2="' + (H - B + 4) + '"/><text x="' + f1(sx(t)) + '" y="' + (H - B + 15) +
           '" text-anchor="middle">' + t + '</text>';
  }
  svg += '<line class="axis" x1="' + L + '" x2="' + (W - R) + '" y1="' + (H - B) + '" y2="' +
         (H - B) + '"/><text x="' + ((L + W - R) / 2) + '" y="' + (H - 2) +
         '" text-anchor="middle">layer</text>';
  const r = entries.length <= 40 ? 2.4 : 1.5;
  for (let s = 0; s < labels.length; ++s) {
    const colour = PALETTE[s % PALETTE.length];
    let d = '', dots = '', prev = null;
    for (const e of entries) {
      const v = valueOf(e.values, m.key, s);
      if (v === null) {
        prev = null;
        continue;
      }
      // A gap (null value or missing layer) breaks the line.
      d += (prev !== null && prev === e.layer - 1 ? 'L' : 'M') + f1(sx(e.layer)) + ' ' + f1(sy(v));
      prev = e.layer;
      dots += '<circle cx="' + f1(sx(e.layer)) + '" cy="' + f1(sy(v)) + '" r="' + r +
              '" fill="' + colour + '"><title>' + esc('layer ' + e.layer + DOT + labels[s] + ': ' +
              v) + '</title></circle>';
    }
    if (d) svg += '<path class="line" stroke="' + colour + '" d="' + d + '"/>';
    svg += dots;
  }
  return svg + '</svg>';
}

function renderCharts() {
  const box = $('charts');
  const entries = arr(report.layers_values).map(obj).filter((e) => num(e.layer) !== null)
      .sort((a, b) => a.layer - b.layer);
  if (!metrics.length || !entries.length) {
    box.innerHTML = emptyNote('Nothing to show: the report has no per-layer figures' +
                              (entries.length ? '' : ' (no numbered layers)') + '.');
    return;
  }
  let html = '<div class="charts">';
  metrics.forEach((m, i) => {
    const labels = seriesLabels(m);
    const svg = chartSvg(m, labels, entries);
    html += '<div class="chart" data-metric="' + i + '"><h3 title="' + esc(m.description) + '">' +
            esc(m.label || m.key) + ' <span class="sub">' + esc(betterText(num(m.better) || 0)) +
            '</span></h3><div class="keys">';
    labels.forEach((l, s) => {
      html += '<span><span class="sw" style="background:' + PALETTE[s % PALETTE.length] +
              '"></span>' + esc(l) + '</span>';
    });
    html += '</div>' + (svg || '<div class="none">no values across layers</div>') + '</div>';
  });
  box.innerHTML = html + '</div>';
  box.addEventListener('click', (e) => {
    const h = e.target.closest('h3');
    const card = h && h.closest('.chart');
    if (!card) return;
    selected.metric = Number(card.dataset.metric);
    $('metric').value = String(selected.metric);
    fillSeriesSelect();
    renderHeatmap();
    $('heatmap-card').scrollIntoView({ behavior: 'smooth' });
  });
}

// ---- tensor table ----
// Each row's HTML is built once; sorting and filtering only re-order and pick
// row indices, and at most `limit` rows are in the DOM at a time (more on
// request). A full 2,000 x 30 table costs seconds of layout on every sort;
// a few hundred rows keep each click well under a frame budget or two.
const ROW_STEP = 300;
function renderTensorTable() {
  const box = $('tensors');
  if (!tensors.length) {
    $('filter').hidden = true;
    box.innerHTML = emptyNote('Nothing to show: no tensors were compared.');
    return;
  }
  const cols = [
    { head: 'name', type: 'str', cls: 'name', key: (t) => str(t.name) },
    { head: 'layer', type: 'num', key: (t) => num(t.layer),
      show: (v) => (v === null ? DASH : String(v)) },
    { head: 'kind', type: 'str', key: (t) => str(t.kind) },
    { head: 'shape', type: 'str', key: (t) => shapeText(t.shape) },
    { head: 'dtypes', type: 'str', key: (t) => dtypesText(t.dtypes) },
    { head: 'numel', type: 'num', key: (t) => num(t.numel), show: fmtInt },
  ];
  for (const m of metrics) {
    seriesLabels(m).forEach((label, s) => {
      cols.push({ head: m.key, sub: label, title: m.label, type: 'num',
                  key: (t) => valueOf(t.values, m.key, s), show: (v) => fmt(v) });
    });
  }
  const keys = cols.map((c) => tensors.map(c.key));
  const rowHtml = tensors.map((_, r) => {
    let row = '<tr>';
    for (let i = 0; i < cols.length; ++i) {
      const c = cols[i], v = keys[i][r];
      if (c.type === 'num') {
        row += '<td class="n' + (v === null ? ' z' : '') + '">' + esc(c.show(v)) + '</td>';
      } else {
        row += '<td' + (c.cls ? ' class="' + c.cls + '"' : '') + '>' + esc(v) + '</td>';
      }
    }
    return row + '</tr>';
  });
  let head = '<div class="tt-wrap"><table class="tt"><thead><tr>';
  cols.forEach((c, i) => {
    head += '<th data-col="' + i + '" title="' + esc((c.title || c.head) + ' (click to sort)') +
            '">' + esc(c.head) +
            (c.sub !== undefined ? '<span class="s">' + esc(c.sub) + '</span>' : '') + '</th>';
  });
  box.innerHTML = head + '</tr></thead><tbody></tbody></table></div>' +
      '<div class="more" hidden><button type="button" data-more="step"></button>' +
      '<button type="button" data-more="all"></button></div>';

  const tbody = box.querySelector('tbody'), more = box.querySelector('.more');
  const names = keys[0].map((n) => n.toLowerCase());
  const collator = new Intl.Collator('en', { numeric: true });
  let order = tensors.map((_, i) => i), shown = order, limit = ROW_STEP;
  let sortCol = -1, sortDir = 1, query = '';

  const draw = () => {
    shown = query === '' ? order : order.filter((i) => names[i].includes(query));
    tbody.innerHTML = shown.slice(0, limit).map((i) => rowHtml[i]).join('');
    const total = plural(tensors.length, 'tensor');
    let text = shown.length === tensors.length ? total : fmtInt(shown.length) + ' of ' + total;
    if (shown.length > limit) text += DOT + 'first ' + fmtInt(limit) + ' shown';
    $('tensor-count').textContent = text;
    more.hidden = shown.length <= limit;
    const step = Math.min(ROW_STEP, shown.length - limit);
    more.firstChild.textContent = 'show ' + fmtInt(step) + ' more';
    more.lastChild.textContent = 'show all ' + fmtInt(shown.length);
  };
  draw();

  box.querySelector('thead').addEventListener('click', (e) => {
    const th = e.target.closest('th');
    if (!th) return;
    const col = Number(th.dataset.col);
    sortDir = col === sortCol ? -sortDir : 1;
    sortCol = col;
    const k = keys[col], numeric = cols[col].type === 'num';
    order = tensors.map((_, i) => i);
    // Nulls (and empty strings) last in both directions; ties keep report order.
    order.sort((a, b) => {
      const x = k[a], y = k[b];
      const xn = x === null || x === '', yn = y === null || y === '';
      if (xn || yn) return xn === yn ? a - b : xn ? 1 : -1;
      const d = numeric ? x - y : collator.compare(x, y);
      return d !== 0 ? sortDir * d : a - b;
    });
    for (const h of box.querySelectorAll('th[data-sort]')) h.removeAttribute('data-sort');
    th.dataset.sort = sortDir > 0 ? 'asc' : 'desc';
    draw();
  });
  more.addEventListener('click', (e) => {
    const which = e.target.dataset && e.target.dataset.more;
    if (!which) return;
    limit = which === 'all' ? shown.length : limit + ROW_STEP;
    draw();
  });
  let pending = 0;
  $('filter').addEventListener('input', (e) => {
    // Debounced: typing a name should not re-filter on every key press.
    clearTimeout(pending);
    pending = setTimeout(() => {
      query = e.target.value.trim().toLowerCase();
      limit = ROW_STEP;
      draw();
    }, 80);
  });
}

// ---- mismatches and warnings: only shown when present ----
function renderProblems() {
  const mismatches = arr(report.mismatches).map(obj);
  if (mismatches.length) {
    const labels = models.map((m) => str(m.label));
    if (base) labels.push(str(base.label || 'base'));
    const perModel = (list, show) => arr(list).map((x, i) =>
        (labels[i] || '#' + (i + 1)) + ': ' + (x == null ? DASH : show(x))).join(DOT);
    let html = '<table class="mm"><thead><tr><th>tensor</th><th>reason</th><th>shapes</th>' +
               '<th>dtypes</th></tr></thead><tbody>';
    for (const mm of mismatches) {
      html += '<tr><td class="name">' + esc(mm.name) + '</td><td>' + esc(mm.reason) + '</td><td>' +
              esc(perModel(mm.shapes, shapeText)) + '</td><td>' + esc(perModel(mm.dtypes, str)) +
              '</td></tr>';
    }
    $('mismatches').innerHTML = html + '</tbody></table>';
    $('mismatch-card').hidden = false;
  }
  const warnings = arr(report.warnings);
  if (warnings.length) {
    $('warnings').innerHTML = warnings.map((w) => '<li>' + esc(w) + '</li>').join('');
    $('warning-card').hidden = false;
  }
}

renderOverview();
setupSelectors();
renderCharts();
renderHeatmap();
renderTensorTable();
renderProblems();
document.body.dataset.rendered = 'ok';
})();
)js";

constexpr std::string_view kPageEnd = R"html(</script>
</body>
</html>
)html";

// Makes JSON text safe as the content of a <script> element. The HTML
// tokenizer ends the element at "</script" in any letter case and "<!--"
// can switch it into the double-escaped state, so every '<' becomes \u003c;
// '>' and '&' follow for symmetry. U+2028/U+2029 are legal in JSON but were
// line terminators in JavaScript source before ES2019, so they are escaped as
// well. None of these characters can occur outside a JSON string, and inside
// one the \u escape decodes to the same character, so JSON.parse (and
// nlohmann) read the original report.
std::string EscapeForScriptElement(std::string_view json) {
  std::string out;
  out.reserve(json.size() + json.size() / 32 + 16);
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else if (static_cast<unsigned char>(c) == 0xE2 && i + 2 < json.size() &&
               static_cast<unsigned char>(json[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(json[i + 2]) == 0xA8 ||
                static_cast<unsigned char>(json[i + 2]) == 0xA9)) {
      out += static_cast<unsigned char>(json[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string RenderCompareHtml(const nlohmann::json& report) {
  // Tensor names come from checkpoint headers and may hold invalid UTF-8;
  // replace it (U+FFFD) rather than throw from a report writer.
  const std::string data = EscapeForScriptElement(
      report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  std::string page;
  page.reserve(kPageHead.size() + kStyle.size() + kBody.size() + data.size() +
               kScriptStart.size() + kScriptCore.size() + kScriptViews.size() + kPageEnd.size());
  page += kPageHead;
  page += kStyle;
  page += kBody;
  page += data;
  page += kScriptStart;
  page += kScriptCore;
  page += kScriptViews;
  page += kPageEnd;
  return page;
}

}  // namespace alloy::merge
