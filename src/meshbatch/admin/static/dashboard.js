// meshbatch dashboard: polls /dashboard/feed once a second and draws a card per route (charts.js draws the SVG).
// No external assets.
"use strict";

const POLL_MS = 1000;
const KEEP = 300; // history points (five minutes)
const FLUSH_COLORS = { items: COLORS.blue, bytes: COLORS.violet, wait: COLORS.green, deadline: COLORS.orange,
                       drain: COLORS.grey };
const SINK_PILL = { up: "ok", down: "bad", connecting: "warn", starting: "warn", closed: "" };

const state = { seq: 0, history: [], feed: null, updates: 0, errors: 0 };
window.meshbatchDashboard = state; // for inspection (and the browser test)

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

// Items per upstream call and the share of calls batching saved: this second's rates, or the totals since the
// route started when it is idle.
function callsSaved(route) {
  const last = route.latest || {};
  let items = last.items_per_s, calls = last.calls_per_s;
  if (!(items > 0 && calls > 0)) { items = route.batcher.items_total; calls = route.upstream_calls_total; }
  if (!(items > 0 && calls > 0)) return { ratio: null, saved: null };
  return { ratio: items / calls, saved: Math.max(0, 1 - calls / items) };
}

function batchCard(route) {
  const b = route.batcher, last = route.latest || {};
  const errors = (last.batch_errors_per_s || 0) + (last.rejected_per_s || 0);
  const queuedShare = b.max_queue ? Math.min(100, (100 * b.queued) / b.max_queue) : 0;
  const flushes = Object.entries(b.flushes).map(([name, value]) => ({ name, value, color: FLUSH_COLORS[name] || COLORS.grey }));
  const sizes = route.sizes;
  const calls = callsSaved(route);
  // Buckets up to the largest one used (at least six), so the bars stay readable.
  const used = Math.max(5, ...sizes.counts.map((n, i) => (n > 0 ? i : 0)), ...sizes.total.map((n, i) => (n > 0 ? i : 0)));
  const labels = sizeLabels(sizes.bounds).slice(0, used + 1);
  const small = (text) => `<span class="muted" style="font-size:12px">${text}</span>`;
  return `<div class="card" data-route="${esc(route.name)}" data-kind="batch">
    <h3>${esc(route.name)}</h3>
    <div class="sub">batching · ${esc(b.codec)} → ${esc(route.cluster || "")} · max_items ${b.policy.max_items}
      · max_in_flight ${b.max_in_flight} · ${esc(b.state)}${b.adaptive ? " · adaptive" : ""}</div>
    <div class="figures">
      ${figure("items/s", fmt(last.items_per_s ?? b.items_per_s))}
      ${figure("upstream calls/s", fmt(last.calls_per_s))}
      ${figure("items per call", calls.ratio === null ? "–" : fmt(calls.ratio) + small(" ×"), "ratio")}
      ${figure("calls saved", calls.saved === null ? "–" : (100 * calls.saved).toFixed(0) + small(" %"), "saved")}
      ${figure("mean batch", fmt(last.size_mean))}
      ${figure("queued", `${b.queued}${small(" / " + b.max_queue)}`)}
      ${figure("in flight", `${b.in_flight}${small(" / " + b.max_in_flight)}`)}
      ${figure("queue wait p50 / p99 ms", `${fmt(last.queue_ms_p50)}${small(" / " + fmt(last.queue_ms_p99))}`)}
      ${figure("upstream p50 / p99 ms", `${fmt(last.upstream_ms_p50)}${small(" / " + fmt(last.upstream_ms_p99))}`)}
      ${figure("errors + rejected /s", fmt(errors), errors > 0 ? "bad" : "")}
    </div>
    <div class="bar-track" title="queue depth"><div class="bar-fill" style="width:${queuedShare.toFixed(1)}%"></div></div>
    <div class="charts" style="margin-top:8px">
      ${chartBox("throughput /s", [
        { name: "items", color: COLORS.blue, fill: true, values: seriesOf(route.name, "items_per_s") },
        { name: "upstream calls", color: COLORS.violet, values: seriesOf(route.name, "calls_per_s") }], "")}
      <div class="chart-box"><div class="title">batch size, last ${sizes.window_s}s</div>
        ${barChart(labels, sizes.counts.slice(0, used + 1), COLORS.blue)}</div>
      ${chartBox("latency ms (p99)", [
        { name: "queue wait", color: COLORS.orange, values: seriesOf(route.name, "queue_ms_p99") },
        { name: "upstream", color: COLORS.violet, values: seriesOf(route.name, "upstream_ms_p99") }], " ms")}
      ${chartBox("queue depth", [
        { name: "queued items", color: COLORS.green, fill: true, values: seriesOf(route.name, "queued") },
        { name: "errors + rejected /s", color: COLORS.red, values: state.history.map((p) => {
          const r = p.routes[route.name];
          return [p.t, r ? (r.batch_errors_per_s || 0) + (r.rejected_per_s || 0) : null];
        }) }], "")}
    </div>
    <div style="margin-top:8px"><div class="title muted" style="font-size:12px">flush reasons (since start)</div>${stackBar(flushes)}</div>
    ${Object.keys(b.rejections).length ? `<div class="legend" style="margin-top:4px">rejected: ${Object.entries(b.rejections).map(([k, v]) => `${esc(k)} ${v}`).join(", ")}</div>` : ""}
  </div>`;
}

function age(seconds) {
  if (!(seconds > 0)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function ingestCard(route) {
  const g = route.ingest, last = route.latest || {}, sink = g.sink || {};
  const pill = `<span class="pill ${SINK_PILL[sink.state] || ""}" data-sink-state="${esc(sink.state)}">${esc(sink.state)}</span>`;
  return `<div class="card" data-route="${esc(route.name)}" data-kind="ingest">
    <h3>${esc(route.name)}</h3>
    <div class="sub">ingest · log ${esc(g.log)} → sink ${esc(sink.type)}${route.cluster ? " (" + esc(route.cluster) + ")" : ""}
      · ack ${esc(g.ack)} · ${esc(g.state)}</div>
    <div class="figures">
      ${figure("accepted/s", fmt(last.accepted_per_s))}
      ${figure("delivered/s", fmt(last.delivered_per_s))}
      ${figure("backlog", fmt(g.backlog, 0), g.backlog > 0 ? "warn" : "")}
      ${figure("oldest age", g.backlog > 0 ? age(g.oldest_age_s) : "–", "age")}
      ${figure("sink", pill, "sink")}
      ${figure("retried/s", fmt(last.retried_per_s), last.retried_per_s > 0 ? "bad" : "")}
      ${figure("dead letters", fmt(g.dead_letters, 0), g.dead_letters > 0 ? "bad" : "")}
      ${figure("delivering", fmt(g.in_flight, 0))}
      ${figure("delivered", fmt(g.delivered_total, 0))}
      ${figure("retries", fmt(g.retried_total, 0))}
    </div>
    ${sink.state === "down" ? `<div class="legend bad sink-error">sink down (${sink.failures} failed attempts in a row): ${esc(sink.error || "no error recorded")}</div>` : ""}
    <div class="charts" style="margin-top:8px">
      ${chartBox("events /s", [
        { name: "accepted", color: COLORS.blue, values: seriesOf(route.name, "accepted_per_s") },
        { name: "delivered", color: COLORS.green, fill: true, values: seriesOf(route.name, "delivered_per_s") },
        { name: "retried", color: COLORS.orange, values: seriesOf(route.name, "retried_per_s") },
        { name: "dead-lettered", color: COLORS.red, values: seriesOf(route.name, "dead_lettered_per_s") }], "")}
      ${chartBox("backlog", [
        { name: "events in the log", color: COLORS.violet, fill: true, values: seriesOf(route.name, "backlog") }], "")}
      ${chartBox("oldest undelivered event", [
        { name: "age", color: COLORS.teal, values: seriesOf(route.name, "oldest_age_s") }], " s")}
      ${chartBox("dead letters", [
        { name: "parked", color: COLORS.red, values: seriesOf(route.name, "dead_letters") }], "")}
    </div>
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
      ${chartBox("requests /s", [
        { name: "requests", color: COLORS.blue, fill: true, values: seriesOf(route.name, "requests_per_s") }], "")}
      ${chartBox("latency ms", [
        { name: "p99", color: COLORS.violet, values: seriesOf(route.name, "request_ms_p99") }], " ms")}
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
  const routes = feed.routes.map((r) => (r.batcher ? batchCard(r) : r.ingest ? ingestCard(r) : plainCard(r))).join("");
  document.getElementById("routes").innerHTML = routes || `<p class="muted">no routes</p>`;
  document.getElementById("clusters").innerHTML = clustersTable(feed.clusters);
  document.getElementById("listeners").innerHTML = listenersTable(feed.listeners);
}

async function poll() {
  try {
    const response = await fetch(`dashboard/feed?since=${state.seq}`, { cache: "no-store" });
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
