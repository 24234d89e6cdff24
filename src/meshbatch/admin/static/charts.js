// meshbatch dashboard: the SVG charts (no external assets). Loaded before dashboard.js, which draws the cards.
"use strict";

const COLORS = { blue: "#2b7bba", orange: "#e0822d", red: "#c8413b", green: "#2f9e5b", violet: "#7a5cc2",
                 grey: "#9aa2b1", teal: "#1f9aa5" };
const SVG_W = 340;
const SVG_H = 120;
// The proxy samples once a second: two points further apart than this have samples missing between them, and a
// line is never drawn across them (nor across a point with no figure, e.g. a p99 in a second without traffic).
const GAP_S = 2.5;

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                    "'": "&#39;" })[c]);
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const d = digits === undefined ? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2) : digits;
  if (Math.abs(value) >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (Math.abs(value) >= 1e4) return (value / 1e3).toFixed(1) + "k";
  return Number(value).toFixed(d);
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

// The runs of a series with no gap: a point with no value ends a run, and so does a jump in time beyond GAP_S.
function segments(values) {
  const runs = [];
  let run = [], last = null;
  for (const [t, v] of values) {
    const known = v !== null && v !== undefined && !Number.isNaN(v);
    if (!known || (last !== null && t - last > GAP_S)) {
      if (run.length) runs.push(run);
      run = [];
    }
    if (known) run.push([t, v]);
    last = t;
  }
  if (run.length) runs.push(run);
  return runs;
}

// The legend of a chart, made from its series, so every line drawn has its entry.
function legend(series) {
  return `<span class="legend">${series.map((s) =>
    `<i style="background:${s.color}"></i><span class="legend-name">${esc(s.name)}</span>`).join("")}</span>`;
}

// A line chart of several series over the history: [{name, color, fill, values: [[t, v], ...]}]. Each series is
// one path with a move (M) at the start of every run, so idle or missing stretches stay blank.
function lineChart(series, unit) {
  const left = 44, right = 6, top = 6, bottom = 16;
  const w = SVG_W - left - right, h = SVG_H - top - bottom;
  let tMin = Infinity, tMax = -Infinity, vMax = 0, count = 0;
  for (const s of series) {
    for (const [t, v] of s.values) {
      tMin = Math.min(tMin, t); tMax = Math.max(tMax, t);
      if (v === null || v === undefined || Number.isNaN(v)) continue;
      vMax = Math.max(vMax, v); count += 1;
    }
  }
  const yMax = niceMax(vMax);
  const parts = [`<svg class="chart line" viewBox="0 0 ${SVG_W} ${SVG_H}" ` +
                 `data-points="${count}" role="img">`];
  for (let i = 0; i <= 2; i += 1) {
    const y = top + h - (h * i) / 2;
    parts.push(`<line class="grid" x1="${left}" x2="${left + w}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text x="${left - 4}" y="${y + 3}" text-anchor="end">${esc(fmt((yMax * i) / 2))}${i === 2 ? esc(unit) : ""}</text>`);
  }
  if (count === 0) {
    parts.push(`<text x="${left + w / 2}" y="${top + h / 2}" text-anchor="middle">no data yet</text>`);
  } else {
    const span = Math.max(tMax - tMin, 1);
    const x = (t) => (left + ((t - tMin) / span) * w).toFixed(1);
    const y = (v) => (top + h - (Math.min(v, yMax) / yMax) * h).toFixed(1);
    for (const s of series) {
      const runs = segments(s.values);
      if (!runs.length) continue;
      const d = runs.map((run) => run.map(([t, v], i) => `${i ? "L" : "M"}${x(t)},${y(v)}`).join("")).join("");
      if (s.fill) {
        const areas = runs.filter((run) => run.length > 1).map((run) => run.map(([t, v], i) =>
          `${i ? "L" : "M"}${x(t)},${y(v)}`).join("") + `L${x(run[run.length - 1][0])},${top + h}L${x(run[0][0])},${top + h}Z`);
        if (areas.length) parts.push(`<path class="area" d="${areas.join("")}" fill="${s.color}" fill-opacity="0.12" stroke="none"/>`);
      }
      parts.push(`<path class="series" data-name="${esc(s.name)}" data-segments="${runs.length}" d="${d}" ` +
                 `fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
      for (const run of runs) {  // a run of one point has no length to stroke: a dot shows it
        if (run.length === 1) parts.push(`<circle class="lone" cx="${x(run[0][0])}" cy="${y(run[0][1])}" r="1.8" fill="${s.color}"/>`);
      }
      const [lt, lv] = runs[runs.length - 1][runs[runs.length - 1].length - 1];
      parts.push(`<circle cx="${x(lt)}" cy="${y(lv)}" r="2.2" fill="${s.color}"/>`);
    }
    parts.push(`<text x="${left}" y="${SVG_H - 3}">-${Math.round(span)}s</text>`);
    parts.push(`<text x="${left + w}" y="${SVG_H - 3}" text-anchor="end">now</text>`);
  }
  parts.push("</svg>");
  return parts.join("");
}

// A titled chart box: the title, the legend of every series, the chart.
function chartBox(title, series, unit) {
  return `<div class="chart-box"><div class="title">${esc(title)} ${legend(series)}</div>${lineChart(series, unit)}</div>`;
}

// Bars for a bucketed distribution: labels and counts.
function barChart(labels, counts, color) {
  const left = 36, right = 4, top = 6, bottom = 16;
  const w = SVG_W - left - right, h = SVG_H - top - bottom;
  const total = counts.reduce((a, b) => a + b, 0);
  const yMax = niceMax(Math.max(0, ...counts));
  const bw = w / Math.max(labels.length, 1);
  const parts = [`<svg class="chart bars" viewBox="0 0 ${SVG_W} ${SVG_H}" ` +
                 `data-total="${total}" role="img">`];
  parts.push(`<line class="grid" x1="${left}" x2="${left + w}" y1="${top + h}" y2="${top + h}"/>`);
  parts.push(`<text x="${left - 4}" y="${top + 8}" text-anchor="end">${esc(fmt(yMax, 0))}</text>`);
  counts.forEach((n, i) => {
    const bh = (n / yMax) * h;
    const x = left + i * bw;
    if (n > 0) {
      parts.push(`<rect class="bar" x="${(x + 2).toFixed(1)}" y="${(top + h - bh).toFixed(1)}" width="${(bw - 4).toFixed(1)}" ` +
                 `height="${bh.toFixed(1)}" fill="${color}"><title>${esc(labels[i])}: ${n}</title></rect>`);
    }
    parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${SVG_H - 3}" text-anchor="middle">${esc(labels[i])}</text>`);
  });
  if (!total) parts.push(`<text x="${left + w / 2}" y="${top + h / 2}" text-anchor="middle">no batches in the window</text>`);
  parts.push("</svg>");
  return parts.join("");
}

// One horizontal bar split by share: [{name, value, color}].
function stackBar(parts) {
  const total = parts.reduce((a, p) => a + p.value, 0);
  if (!total) return `<div class="muted">no flushes yet</div>`;
  const segs = parts.filter((p) => p.value > 0).map((p) =>
    `<div title="${esc(p.name)}: ${p.value}" style="width:${((100 * p.value) / total).toFixed(2)}%;background:${p.color}"></div>`);
  const names = parts.filter((p) => p.value > 0).map((p) =>
    `<i style="background:${p.color}"></i>${esc(p.name)} ${((100 * p.value) / total).toFixed(0)}%`).join("");
  return `<div class="stack" style="display:flex;height:12px;border-radius:4px;overflow:hidden">${segs.join("")}</div>` +
         `<div class="legend">${names}</div>`;
}
