// The live status page of `xray serve`: fetch /status.json every 5 s and draw it.
// Plain DOM (textContent only, never innerHTML: a message cannot inject markup); nothing from the network
// but this server.
"use strict";

const REFRESH_MS = 5000;
// Keys drawn by a section of their own; any other top-level key goes to "Other" (new sections show up
// before the page learns about them).
const KNOWN = new Set(["generated_time", "tables", "streams", "landing_backlog", "landing_problems", "champion",
  "gold_waiting", "features", "quarantine", "alerts", "drift", "charts", "throughput", "synthetic", "unlabelled"]);
const METRICS = [["accuracy", "accuracy"], ["precision", "precision"], ["recall", "recall"],
  ["specificity", "specificity"], ["f1", "F1"], ["roc_auc", "ROC AUC"]];
const HELD_OUT_SPLITS = new Set(["test"]);  // no model trains on them (batch/evaluation/figures.py)

// -- formatting ------------------------------------------------------------------------------------------
// Every time on the page is UTC, 24-hour, "2026-12-01 09:07:00" (as streaming/ops/text.py writes it).
function time(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : "–"; }
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;
function num(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(digits) : String(value);
}
// Metrics, PSI and shares always with three decimals (1.000, not 1).
function fixed(value) { return typeof value === "number" ? value.toFixed(3) : num(value); }
// A rate whose denominator is empty is not defined, not 0.000 (streaming/ops/text.py undefined_metrics):
// the confusion matrix [[tn, fp], [fn, tp]] says which.
const DENOMINATORS = {recall: [[1, 0], [1, 1]], specificity: [[0, 0], [0, 1]], precision: [[0, 1], [1, 1]],
  f1: [[0, 1], [1, 0], [1, 1]]};
function rate(metrics, key) {
  const matrix = metrics.confusion_matrix, cells = DENOMINATORS[key];
  if (matrix && cells && cells.reduce((sum, [r, c]) => sum + matrix[r][c], 0) === 0) return "n/a";
  return fixed(metrics[key]);
}
function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  let s = Math.max(0, Math.floor(seconds));
  for (const [unit, size, small, smallSize] of [["d", 86400, "h", 3600], ["h", 3600, "m", 60], ["m", 60, "s", 1]]) {
    if (s >= size) return `${Math.floor(s / size)}${unit} ${Math.floor((s % size) / smallSize)}${small}`;
  }
  return `${s}s`;
}
function bytes(size) {
  if (!size) return "0 B";
  const power = Math.min(Math.floor(Math.log(size) / Math.log(1024)), 4);
  return power ? `${(size / 1024 ** power).toFixed(1)} ${["B", "KB", "MB", "GB", "TB"][power]}` : `${size} B`;
}
// An alert's details: "psi: 0.310; images: 500", not JSON.
function details(value) {
  if (value === null || typeof value !== "object") return compact(value);
  return compact(flatten(value, "", []).map(([k, v]) => `${k}: ${v}`).join("; "));
}
function compact(value, width = 160) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text && text.length > width ? text.slice(0, width - 1) + "…" : (text || "");
}

// -- building blocks -------------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") { if (value) node.className = value; }
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// A table with a caption and column headers; `numeric` right-aligns columns; `rowClass` marks rows.
function table(id, caption, headers, rows, numeric = [], rowClass = () => "") {
  return el("table", {id},
    el("caption", {text: caption}),
    el("thead", {}, el("tr", {}, headers.map((h, i) =>
      el("th", {scope: "col", class: numeric.includes(i) ? "num" : "", text: h})))),
    el("tbody", {}, rows.map((row, r) => el("tr", {class: rowClass(r)}, row.map((cell, i) =>
      el("td", {class: numeric.includes(i) ? "num" : "", text: cell === null ? "–" : String(cell)}))))));
}

function note(text, kind = "") { return text ? el("p", {class: kind ? `note ${kind}` : "note", text}) : null; }

function fill(id, ...nodes) {
  document.getElementById(id).replaceChildren(...nodes.flat().filter(node => node !== null && node !== undefined));
}

// -- sections --------------------------------------------------------------------------------------------
function renderAlerts(alerts) {
  if (!alerts || !alerts.available) {
    return fill("alerts", note("no alerts table yet (pipeline_alerts is created by the drift monitor)"));
  }
  if (!alerts.rows.length) return fill("alerts", note("no alerts", "ok"));
  fill("alerts",
    table("alerts-table", `newest ${alerts.rows.length} of ${alerts.total} alert(s), newest first`,
      ["time (UTC)", "severity", "kind", "message", "details"],
      alerts.rows.map(a => [time(a.alert_time), a.severity, a.kind, a.message,
        a.details === null || a.details === undefined ? "" : details(a.details)]),
      [], r => `severity-${String(alerts.rows[r].severity || "").toLowerCase()}`));
}

function checkpointState(stream, bronzeCheckpoint) {
  const c = stream.checkpoint || {};
  if (!c.exists && bronzeCheckpoint && (stream.query === "silver" || stream.query === "gold")) {
    return "in bronze's batches";
  }
  if (!c.exists) return "no checkpoint";
  if (c.committed_batch_id === null && c.planned_batch_id === null) return "empty";
  const state = `committed ${num(c.committed_batch_id)}`;
  return c.uncommitted ? `${state}, ${c.planned_batch_id} planned` : state;
}

function renderStreams(status) {
  const streams = status.streams || [];
  const bronze = streams.some(s => s.query === "bronze" && s.checkpoint && s.checkpoint.exists);
  fill("streams",
    table("streams-table", "last micro-batch of each query; lag = time since it finished",
      ["query", "last batch", "finished (UTC)", "lag", "in", "out", "checkpoint"],
      streams.map(s => [s.query, s.last_batch_id === -1 ? "catch-up" : num(s.last_batch_id),
        time(s.last_event_time), age(s.age_seconds), num(s.input_rows), num(s.output_rows),
        checkpointState(s, bronze)]),
      [1, 3, 4, 5]),
    status.gold_waiting ? note(status.gold_waiting, "warn") : null);
}

function renderBacklog(status) {
  const b = status.landing_backlog || {};
  const problems = status.landing_problems || [];
  fill("backlog",
    el("p", {class: "figure"}, el("strong", {id: "backlog-files", text: num(b.files)}),
      ` file(s), ${bytes(b.bytes)} not ingested yet`),
    note(b.newest_ingested_time ? `newest ingested file modified ${time(b.newest_ingested_time)} UTC`
      : (b.files ? "nothing ingested yet: every image in landing is waiting" : "")),
    status.unlabelled && status.unlabelled.images ? note(`${status.unlabelled.images} image(s) in silver without ` +
      "a label (not from a landing/<split>/<LABEL>/ folder): scored, not used for training", "warn") : null,
    problems.length ? table("problems-table", "skipped by the landing scan (see xray status for the folders)",
      ["problem", "detail", "since (UTC)"],
      problems.map(p => [String(p.kind).replaceAll("_", " "), p.detail, time(p.first_seen)])) : null);
}

function renderQuarantine(q) {
  q = q || {total: 0, by_rule: {}};
  const rules = Object.entries(q.by_rule || {});
  fill("quarantine",
    el("p", {class: "figure"}, el("strong", {text: num(q.total)}), " file(s) quarantined"),
    rules.length ? table("quarantine-table", "files per rule", ["rule", "files"], rules, [1]) : null);
}

function renderModel(status) {
  const m = status.champion || {};
  const parts = [];
  if (m.error) parts.push(note(`${m.name}: ${m.error}`, "warn"));
  else if (m.version === null || m.version === undefined) {
    parts.push(note(`${m.name}: no version has the 'champion' alias yet; run xray retrain`, "warn"));
  } else {
    parts.push(el("p", {class: "figure"}, el("strong", {text: `${m.name} v${m.version}`}),
      ` champion, threshold ${fixed(m.threshold)}, feature version ${m.feature_version || "–"}`));
    const held = Object.entries(m.hold_out || {});
    if (held.length) {
      parts.push(note(`validation at training (patients held out): ${held.map(([k, v]) => `${k} ${fixed(v)}`)
        .join(", ")}`));
    }
    parts.push(m.metrics && m.metrics.length
      ? table("metrics-table", "latest evaluation per split (xray metrics); held out = never trained on",
        ["split", "role", "images", ...METRICS.map(([, label]) => label), "evaluated (UTC)"],
        m.metrics.map(x => [x.split, HELD_OUT_SPLITS.has(x.split) ? "held out" : "in-sample", num(x.sample_count),
          ...METRICS.map(([key]) => rate(x, key)), time(x.evaluated_time)]),
        [2, 3, 4, 5, 6, 7, 8], r => HELD_OUT_SPLITS.has(m.metrics[r].split) ? "held-out" : "")
      : note("not evaluated yet: run xray metrics"));
  }
  const f = status.features;
  if (f && f.stale) {
    parts.push(note(`${f.stale} silver image(s) have features of an older version only: run xray refeature`,
      "warn"));
  }
  fill("model", parts);
}

function sparkline(values, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 320, height = 60, numbers = values.filter(v => typeof v === "number");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  if (numbers.length < 2) return svg;
  const top = Math.max(...numbers), bottom = Math.min(0, ...numbers), span = top - bottom || 1;
  const points = values.map((v, i) => typeof v === "number"
    ? `${(i * (width - 4) / (values.length - 1) + 2).toFixed(1)},${(height - 2 - (v - bottom) * (height - 4) / span)
      .toFixed(1)}` : null).filter(Boolean);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  return svg;
}

function renderDrift(drift) {
  if (!drift || !drift.available) {
    return fill("drift", note("no drift figures yet (pipeline_events has no drift_psi column)"));
  }
  if (!drift.rows.length) return fill("drift", note("no micro-batch has a drift figure yet"));
  const rows = drift.rows;
  fill("drift",
    sparkline(rows.map(r => r.drift_psi), "population stability index of the last batches, oldest first"),
    table("drift-table", `last ${rows.length} batch(es) with a drift figure, oldest first`,
      ["time (UTC)", "query", "batch", "PSI", "predicted prevalence"],
      rows.map(r => [time(r.event_time), r.query, num(r.batch_id), fixed(r.drift_psi), fixed(r.predicted_prevalence)]),
      [2, 3, 4]));
}

function renderTables(tables) {
  fill("tables",
    table("tables-table", "every declared table, from its Delta log", ["table", "layer", "rows", "version",
      "last commit (UTC)"],
    (tables || []).map(t => t.exists ? [t.name, t.layer, num(t.rows), num(t.version), time(t.last_modified)]
      : [t.name, t.layer, "–", "–", "not created yet"]), [2, 3]));
}

function renderThroughput(throughput) {
  if (!throughput || !throughput.available) return fill("throughput", note("no micro-batch has run yet"));
  const rows = throughput.rows;
  if (!rows.length) return fill("throughput", note("no bronze micro-batch has read files yet"));
  fill("throughput",
    sparkline(rows.map(r => r.images_per_second), "images per second of the last batches, oldest first"),
    table("throughput-table", `last ${rows.length} bronze batch(es) that read files, oldest first; latency: ` +
      "from a file's modification time to its batch's commit (in the one-pass plan, to gold)",
      ["finished (UTC)", "batch", "files", "seconds", "images/s", "latency median", "latency max"],
      rows.map(r => [time(r.event_time), num(r.batch_id), num(r.files), num(r.seconds, 2), num(r.images_per_second, 1),
        age(r.latency_median_seconds), age(r.latency_max_seconds)]),
      [1, 2, 3, 4, 5, 6]));
}

function renderSynthetic(synthetic) {
  const banner = document.getElementById("synthetic");
  banner.hidden = !synthetic;
  if (synthetic) banner.replaceChildren(el("strong", {text: synthetic.title}), ` ${synthetic.text}`);
}

// A value as a person reads it: times in UTC, yes/no, numbers, "none" for an empty list.
function readable(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "string" && ISO_TIME.test(value)) return `${time(value)} UTC`;
  return num(value);
}
function label(key) { return String(key).replaceAll("_", " "); }
// Nested objects and lists as rows of "section › key" and a readable value (never raw JSON).
function flatten(value, prefix, rows) {
  if (Array.isArray(value)) {
    if (!value.length) rows.push([prefix, "none"]);
    else if (value.every(v => v === null || typeof v !== "object")) rows.push([prefix, value.map(readable).join(", ")]);
    else value.forEach((item, i) => flatten(item, `${prefix} ${i + 1}`, rows));
  } else if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) rows.push([prefix, "none"]);
    entries.forEach(([k, v]) => flatten(v, prefix ? `${prefix} › ${label(k)}` : label(k), rows));
  } else {
    rows.push([prefix || "value", readable(value)]);
  }
  return rows;
}

function renderOther(status) {
  const extra = Object.keys(status).filter(key => !KNOWN.has(key));
  document.getElementById("other-section").hidden = !extra.length;
  fill("other", extra.map(key => table(`other-${key}`, label(key), ["", "value"], flatten(status[key], "", []))));
}

let chartsShown = "";
function renderCharts(charts) {
  const key = JSON.stringify(charts || []);
  if (key === chartsShown) return;  // unchanged: keep the images, no reload every 5 s
  chartsShown = key;
  if (!charts || !charts.length) return fill("charts", note("no report yet: run xray metrics"));
  fill("charts", charts.map(c => el("figure", {},
    el("img", {src: `/charts/${encodeURIComponent(c.name)}?v=${c.version}`, alt: c.title, loading: "lazy"}),
    el("figcaption", {text: c.title}))));
}

function render(status) {
  renderSynthetic(status.synthetic);
  renderAlerts(status.alerts);
  renderStreams(status);
  renderBacklog(status);
  renderQuarantine(status.quarantine);
  renderModel(status);
  renderThroughput(status.throughput);
  renderDrift(status.drift);
  renderTables(status.tables);
  renderOther(status);
  renderCharts(status.charts);
}

// -- refresh ---------------------------------------------------------------------------------------------
function showError(text) {
  const banner = document.getElementById("error");
  banner.textContent = text;
  banner.hidden = !text;
}

async function refresh() {
  try {
    const response = await fetch("/status.json", {cache: "no-store"});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    render(body);
    document.getElementById("updated").textContent =
      `updated at ${time(new Date().toISOString())} UTC (status of ${time(body.generated_time)} UTC)`;
    showError("");
  } catch (error) {
    showError(`cannot reach the status server (${error.message}): showing the last status, trying again ` +
      `every ${REFRESH_MS / 1000} s`);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener("DOMContentLoaded", refresh);
