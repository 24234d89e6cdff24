// meshbatch dashboard: polls /dashboard/feed once a second and draws the figures as SVG. No external assets.
"use strict";

const POLL_MS = 1000;
const KEEP = 300; // history points (five minutes)
const COLORS = { blue: "#2b7bba", orange: "#e0822d", red: "#c8413b", green: "#2f9e5b", violet: "#7a5cc2",
                 grey: "#9aa2b1" };
const FLUSH_COLORS = { items: COLORS.blue, bytes: COLORS.violet, wait: COLORS.green, deadline: COLORS.orange,
                       drain: COLORS.grey };
const SVG_W = 340;
const SVG_H = 120;

const state = { seq: 0, history: [], feed: null, updates: 0, errors: 0 };
window.meshbatchDashboard = state; // for inspection (and the browser test)

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

// A line chart of several series over the history: [{name, color, values: [[t, v], ...]}].
function lineChart(series, unit) {
  const left = 44, right = 6, top = 6, bottom = 16;
  const w = SVG_W - left - right, h = SVG_H - top - bottom;
  let tMin = Infinity, tMax = -Infinity, vMax = 0, count = 0;
  for (const s of series) {
    for (const [t, v] of s.values) {
      if (v === null || v === undefined) continue;
      tMin = Math.min(tMin, t); tMax = Math.max(tMax, t); vMax = Math.max(vMax, v); count += 1;
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
    const x = (t) => left + ((t - tMin) / span) * w;
    const y = (v) => top + h - (Math.min(v, yMax) / yMax) * h;
    for (const s of series) {
      const pts = s.values.filter(([, v]) => v !== null && v !== undefined);
      if (!pts.length) continue;
      const d = pts.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
      if (s.fill) {
        const last = pts[pts.length - 1], first = pts[0];
        parts.push(`<path d="${d}L${x(last[0]).toFixed(1)},${top + h}L${x(first[0]).toFixed(1)},${top + h}Z" ` +
                   `fill="${s.color}" fill-opacity="0.12" stroke="none"/>`);
      }
      parts.push(`<path class="series" data-name="${esc(s.name)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
      const [lt, lv] = pts[pts.length - 1];
      parts.push(`<circle cx="${x(lt).toFixed(1)}" cy="${y(lv).toFixed(1)}" r="2.2" fill="${s.color}"/>`);
    }
    parts.push(`<text x="${left}" y="${SVG_H - 3}">-${Math.round(span)}s</text>`);
    parts.push(`<text x="${left + w}" y="${SVG_H - 3}" text-anchor="end">now</text>`);
  }
  parts.push("</svg>");
  return parts.join("");
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
  const legend = parts.filter((p) => p.value > 0).map((p) =>
    `<i style="background:${p.color}"></i>${esc(p.name)} ${((100 * p.value) / total).toFixed(0)}%`).join("");
  return `<div class="stack" style="display:flex;height:12px;border-radius:4px;overflow:hidden">${segs.join("")}</div>` +
         `<div class="legend">${legend}</div>`;
}

function seriesOf(route, key) {
  return state.history.map((p) => [p.t, p.routes[route] ? p.routes[route][key] : null]);
}

function figure(label, value, cls) {
  return `<div class="figure ${cls || ""}"><div class="v">${value}</div><div class="k">${esc(label)}</div></div>`;
}

function sizeLabels(bounds) {
  const labels = [];
  let low = 1;
  for (const b of bounds) {
    labels.push(low === b ? String(b) : `${low}-${b}`);
    low = b + 1;
  }
  labels.push(`>${bounds[bounds.length - 1]}`);
  return labels;
}

function batchCard(route) {
  const b = route.batcher, last = route.latest || {};
  const errors = (last.batch_errors_per_s || 0) + (last.rejected_per_s || 0);
  const queuedShare = b.max_queue ? Math.min(100, (100 * b.queued) / b.max_queue) : 0;
  const flushes = Object.entries(b.flushes).map(([name, value]) => ({ name, value, color: FLUSH_COLORS[name] || COLORS.grey }));
  const sizes = route.sizes;
  // Buckets up to the largest one used (at least six), so the bars stay readable.
  const used = Math.max(5, ...sizes.counts.map((n, i) => (n > 0 ? i : 0)), ...sizes.total.map((n, i) => (n > 0 ? i : 0)));
  const labels = sizeLabels(sizes.bounds).slice(0, used + 1);
  return `<div class="card" data-route="${esc(route.name)}" data-kind="batch">
    <h3>${esc(route.name)}</h3>
    <div class="sub">batching · ${esc(b.codec)} → ${esc(route.cluster || "")} · max_items ${b.policy.max_items}
      · max_in_flight ${b.max_in_flight} · ${esc(b.state)}${b.adaptive ? " · adaptive" : ""}</div>
    <div class="figures">
      ${figure("items/s", fmt(last.items_per_s ?? b.items_per_s))}
      ${figure("batches/s", fmt(last.batches_per_s))}
      ${figure("mean batch", fmt(last.size_mean))}
      ${figure("queue wait p99 ms", fmt(last.queue_ms_p99))}
      ${figure("upstream p99 ms", fmt(last.upstream_ms_p99))}
      ${figure("queued", `${b.queued}<span class="muted" style="font-size:12px"> / ${b.max_queue}</span>`)}
      ${figure("in flight", `${b.in_flight}<span class="muted" style="font-size:12px"> / ${b.max_in_flight}</span>`)}
      ${figure("queue wait p50 ms", fmt(last.queue_ms_p50))}
      ${figure("upstream p50 ms", fmt(last.upstream_ms_p50))}
      ${figure("errors + rejected /s", fmt(errors), errors > 0 ? "bad" : "")}
    </div>
    <div class="bar-track" title="queue depth"><div class="bar-fill" style="width:${queuedShare.toFixed(1)}%"></div></div>
    <div class="charts" style="margin-top:8px">
      <div class="chart-box"><div class="title">items/s</div>
        ${lineChart([{ name: "items/s", color: COLORS.blue, fill: true, values: seriesOf(route.name, "items_per_s") }], "")}</div>
      <div class="chart-box"><div class="title">batch size, last ${sizes.window_s}s</div>
        ${barChart(labels, sizes.counts.slice(0, used + 1), COLORS.blue)}</div>
      <div class="chart-box"><div class="title">latency ms (p99) <span class="legend"><i style="background:${COLORS.orange}"></i>queue wait<i style="background:${COLORS.violet}"></i>upstream</span></div>
        ${lineChart([{ name: "queue p99", color: COLORS.orange, values: seriesOf(route.name, "queue_ms_p99") },
                     { name: "upstream p99", color: COLORS.violet, values: seriesOf(route.name, "upstream_ms_p99") }], " ms")}</div>
      <div class="chart-box"><div class="title">queue depth <span class="legend"><i style="background:${COLORS.red}"></i>errors+rejected/s</span></div>
        ${lineChart([{ name: "queued", color: COLORS.green, fill: true, values: seriesOf(route.name, "queued") },
                     { name: "errors", color: COLORS.red, values: state.history.map((p) => {
                       const r = p.routes[route.name];
                       return [p.t, r ? (r.batch_errors_per_s || 0) + (r.rejected_per_s || 0) : null];
                     }) }], "")}</div>
    </div>
    <div style="margin-top:8px"><div class="title muted" style="font-size:12px">flush reasons (since start)</div>${stackBar(flushes)}</div>
    ${Object.keys(b.rejections).length ? `<div class="legend" style="margin-top:4px">rejected: ${Object.entries(b.rejections).map(([k, v]) => `${esc(k)} ${v}`).join(", ")}</div>` : ""}
  </div>`;
}

function plainCard(route) {
  const last = route.latest || {};
  const statuses = Object.entries(route.statuses || {}).map(([s, n]) => `${esc(s)}: ${n}`).join(" · ") || "none yet";
  const answered = Object.values(route.statuses || {}).reduce((a, b) => a + b, 0);
  return `<div class="card" data-route="${esc(route.name)}" data-kind="${esc(route.kind)}">
    <h3>${esc(route.name)}</h3>
    <div class="sub">${esc(route.kind)} · listener ${esc(route.listener)}${route.cluster ? " → " + esc(route.cluster) : ""}</div>
    <div class="figures">
      ${figure("requests/s", fmt(last.requests_per_s))}
      ${figure("5xx/s", fmt(last.errors_5xx_per_s), last.errors_5xx_per_s > 0 ? "bad" : "")}
      ${figure("p50 ms", fmt(last.request_ms_p50))}
      ${figure("p99 ms", fmt(last.request_ms_p99))}
      ${figure("answered", fmt(answered, 0))}
    </div>
    <div class="legend">by status: ${statuses}</div>
    <div class="charts" style="margin-top:8px">
      <div class="chart-box"><div class="title">requests/s</div>
        ${lineChart([{ name: "requests/s", color: COLORS.blue, fill: true, values: seriesOf(route.name, "requests_per_s") }], "")}</div>
      <div class="chart-box"><div class="title">latency ms (p99)</div>
        ${lineChart([{ name: "p99", color: COLORS.violet, values: seriesOf(route.name, "request_ms_p99") }], " ms")}</div>
    </div>
  </div>`;
}

function clustersTable(clusters) {
  if (!clusters.length) return `<p class="muted">no clusters</p>`;
  return clusters.map((c) => {
    const rows = (c.endpoints || []).map((e) => {
      const conns = e.connections || {};
      return `<tr data-endpoint="${esc(e.address)}"><td><span class="dot ${esc(e.health)}"></span>${esc(e.address)}</td>
        <td>${esc(e.health)}${e.health_flags && e.health_flags.length ? " (" + esc(e.health_flags.join(", ")) + ")" : ""}</td>
        <td class="num">${e.active_requests ?? "–"}</td><td class="num">${e.requests ?? "–"}</td>
        <td class="num">${e.errors ?? "–"}</td><td class="num">${fmt(e.latency_ewma_ms)}</td>
        <td class="num">${conns.open ?? "–"} / ${conns.idle ?? "–"}</td></tr>`;
    }).join("");
    const errors = Object.entries(c.upstream_errors || {}).map(([k, v]) => `${esc(k)} ${v}`).join(", ");
    return `<table data-cluster="${esc(c.name)}"><thead><tr><th colspan="7">${esc(c.name)} · ${esc(c.lb)} · ` +
      `${c.available ?? "?"} of ${(c.endpoints || []).length} available${errors ? " · errors: " + errors : ""}</th></tr>
      <tr><th>endpoint</th><th>health</th><th class="num">active</th><th class="num">requests</th>
      <th class="num">errors</th><th class="num">latency ms (ewma)</th><th class="num">conns open / idle</th></tr></thead>
      <tbody>${rows}</tbody></table>`;
  }).join("");
}

function listenersTable(listeners) {
  const rows = listeners.map((l) => `<tr><td>${esc(l.name)}</td><td>${esc(l.address)}</td>
    <td class="num">${l.connections}</td><td class="num">${l.accepted}</td><td class="num">${l.rejected}</td></tr>`).join("");
  return `<table><thead><tr><th>listener</th><th>address</th><th class="num">connections</th>
    <th class="num">accepted</th><th class="num">rejected</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function render(feed) {
  const status = document.getElementById("status");
  status.textContent = feed.draining ? "draining" : "serving";
  status.className = "pill " + (feed.draining ? "warn" : "ok");
  const up = Math.max(0, feed.now - feed.started);
  document.getElementById("meta").textContent =
    `config version ${feed.version} · up ${up < 120 ? Math.round(up) + "s" : Math.round(up / 60) + "m"}`;
  document.getElementById("updated").textContent = "updated " + new Date(feed.now * 1000).toLocaleTimeString();
  const routes = feed.routes.map((r) => (r.kind === "batch" && r.batcher ? batchCard(r) : plainCard(r))).join("");
  document.getElementById("routes").innerHTML = routes || `<p class="muted">no routes</p>`;
  document.getElementById("clusters").innerHTML = clustersTable(feed.clusters);
  document.getElementById("listeners").innerHTML = listenersTable(feed.listeners);
}

async function poll() {
  try {
    const response = await fetch(`/dashboard/feed?since=${state.seq}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`feed answered ${response.status}`);
    const feed = await response.json();
    if (feed.seq < state.seq) state.history = []; // the proxy restarted
    for (const p of feed.history) state.history.push(p);
    if (state.history.length > KEEP) state.history.splice(0, state.history.length - KEEP);
    state.seq = feed.seq;
    state.feed = feed;
    render(feed);
    state.updates += 1;
  } catch (err) {
    state.errors += 1;
    const status = document.getElementById("status");
    status.textContent = "disconnected";
    status.className = "pill bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
