// Run page: live learning curves from /ws/runs/{id}, progress with rate and ETA, config,
// cancel and downloads.

import { apiFetch, showError, showMessage } from "./api.js";
import {
  element,
  flattenConfig,
  formatDuration,
  formatNumber,
  formatPercent,
  formatTime,
  formatValue,
  isActive,
  statusBadge,
} from "./format.js";
import { COLORS, baseLayout, horizontalLine, plotConfig, setLogScale } from "./plots.js";
import {
  curriculumText,
  drawPerN,
  hasCurriculum,
  hasPerN,
  readableConfig,
} from "./run_curriculum.js";
import { connectSocket } from "./socket.js";
import { addTableExport } from "./table_export.js";

const RATE_WINDOW = 10; // metric events used for the steps/s estimate
const MAX_LOG_LINES = 500;

const page = document.getElementById("run-page");
const runId = page.dataset.runId;
const lossChart = document.getElementById("loss-chart");
const accuracyChart = document.getElementById("accuracy-chart");
const perNChart = document.getElementById("per-n-chart");
const curriculumStatus = document.getElementById("curriculum-status");
const logScale = document.getElementById("log-scale");

let run = null;
let metrics = [];
let chartsDrawn = false;

function isClassification() {
  return (
    metrics.some((row) => row.test_accuracy != null || row.train_accuracy != null) ||
    run?.final_metrics?.final_test_accuracy != null
  );
}

/** Columns of the curves: steps and values of `key`, skipping metric rows where it is null. */
function series(rows, key) {
  const kept = rows.filter((row) => row[key] !== null && row[key] !== undefined);
  return { x: kept.map((row) => row.step), y: kept.map((row) => row[key]) };
}

function curveTraces(trainKey, testKey, label) {
  return [
    {
      ...series(metrics, trainKey),
      name: `train ${label}`,
      mode: "lines",
      line: { color: COLORS[0], width: 1.5 },
    },
    {
      ...series(metrics, testKey),
      name: `test ${label}`,
      mode: "lines+markers",
      line: { color: COLORS[1], width: 2 },
      marker: { size: 5 },
    },
  ];
}

function baselineOverlay(forAccuracy) {
  const baselines = run?.final_metrics?.baselines ?? {};
  if (forAccuracy !== isClassification()) return { shapes: [], annotations: [] };
  const lines = Object.entries(baselines).map(([name, value], index) =>
    horizontalLine(
      value,
      `${name} baseline ${formatNumber(value)}`,
      COLORS[(index + 2) % COLORS.length],
    ),
  );
  return {
    shapes: lines.map((line) => line.shape),
    annotations: lines.map((line) => line.annotation),
  };
}

/** Draw both charts from scratch; uirevision keeps the user's zoom across redraws. */
function drawCharts() {
  const lossLayout = {
    ...baseLayout({ title: "Loss", xTitle: "step", yTitle: "loss", uirevision: runId }),
    ...baselineOverlay(false),
  };
  lossLayout.yaxis.type = logScale.checked ? "log" : "linear";
  window.Plotly.react(
    lossChart,
    curveTraces("train_loss", "test_loss", "loss"),
    lossLayout,
    plotConfig(`${run?.name ?? runId}-loss`),
  );

  if (isClassification()) {
    accuracyChart.hidden = false;
    const accuracyLayout = {
      ...baseLayout({ title: "Accuracy", xTitle: "step", yTitle: "accuracy", uirevision: runId }),
      ...baselineOverlay(true),
    };
    accuracyLayout.yaxis.range = [0, 1];
    window.Plotly.react(
      accuracyChart,
      curveTraces("train_accuracy", "test_accuracy", "accuracy"),
      accuracyLayout,
      plotConfig(`${run?.name ?? runId}-accuracy`),
    );
  }
  drawTaskCharts();
  chartsDrawn = true;
}

/** Draw the per-n accuracy chart and the curriculum line when the run has them. */
function drawTaskCharts() {
  perNChart.hidden = !hasPerN(metrics);
  if (!perNChart.hidden) drawPerN(perNChart, metrics, run);
  curriculumStatus.hidden = !hasCurriculum(run);
  if (!curriculumStatus.hidden) curriculumStatus.textContent = curriculumText(metrics, run);
}

/** Append one metric row to the curves without redrawing, so zoom and pan stay as they are. */
function appendMetric(row) {
  const wasClassification = isClassification();
  metrics.push(row);
  if (!chartsDrawn || isClassification() !== wasClassification) {
    drawCharts();
    return;
  }
  extend(lossChart, row, "train_loss", "test_loss");
  if (isClassification()) extend(accuracyChart, row, "train_accuracy", "test_accuracy");
  if (row.test_accuracy_per_n || row.curriculum_stage != null) drawTaskCharts();
}

function extend(chart, row, trainKey, testKey) {
  const indices = [];
  const x = [];
  const y = [];
  for (const [index, key] of [trainKey, testKey].entries()) {
    if (row[key] === null || row[key] === undefined) continue;
    indices.push(index);
    x.push([row.step]);
    y.push([row[key]]);
  }
  if (indices.length) window.Plotly.extendTraces(chart, { x, y }, indices);
}

/** Steps per second over the last few metric events, or null before there are two. */
function stepsPerSecond() {
  const recent = metrics.slice(-RATE_WINDOW).filter((row) => row.elapsed != null);
  if (recent.length < 2) {
    const last = recent.at(-1);
    return last && last.elapsed > 0 ? last.step / last.elapsed : null;
  }
  const first = recent[0];
  const last = recent.at(-1);
  const seconds = last.elapsed - first.elapsed;
  return seconds > 0 ? (last.step - first.step) / seconds : null;
}

function renderProgress() {
  const steps = run?.progress?.steps ?? run?.config?.steps ?? 0;
  const step = Math.max(run?.progress?.step ?? 0, metrics.at(-1)?.step ?? 0);
  const bar = document.getElementById("run-progress");
  bar.max = steps || 1;
  bar.value = step;
  const parts = [`${formatNumber(step)} / ${formatNumber(steps)} steps`];
  const rate = stepsPerSecond();
  if (rate) parts.push(`${formatNumber(rate, 3)} steps/s`);
  if (run && isActive(run) && rate && steps > step)
    parts.push(`ETA ${formatDuration((steps - step) / rate)}`);
  const elapsed = metrics.at(-1)?.elapsed;
  if (elapsed != null) parts.push(`elapsed ${formatDuration(elapsed)}`);
  document.getElementById("progress-text").textContent = parts.join(" · ");
}

function renderHeader() {
  document.title = `${run.name} · Relational Memory Explorer`;
  document.getElementById("run-name").textContent = run.name;
  document.getElementById("run-status").replaceChildren(statusBadge(run.status));
  page.dataset.status = run.status;
  const params = run.param_count != null ? `${formatNumber(run.param_count)} parameters · ` : "";
  document.getElementById("run-summary").textContent =
    `${run.model.toUpperCase()} on ${run.task}, seed ${run.seed} · ${params}created ${formatTime(run.created_at)}` +
    (run.finished_at ? ` · finished ${formatTime(run.finished_at)}` : "");

  const error = document.getElementById("run-error");
  error.hidden = !run.error;
  error.textContent = run.error ? `Run ${run.status}: ${run.error}` : "";

  document.getElementById("cancel-button").disabled = !isActive(run);
  // A cancelled run that saved a checkpoint can be explored too.
  document.getElementById("explore-link").hidden = !run.has_checkpoint;
  document.getElementById("download-checkpoint").hidden = !run.has_checkpoint;
}

const STOP_REASON_TEXT = {
  steps: "all steps done",
  time_limit: "time limit",
  cancel: "cancel",
};

function renderFinalMetrics() {
  const body = document.querySelector("#final-table tbody");
  const final = run.final_metrics;
  document.getElementById("final-empty").hidden = Boolean(final);
  if (!final) {
    body.replaceChildren();
    return;
  }
  // Each row is [label, displayed text, raw number]; the table export uses the raw number.
  const rows = [
    ["final test loss", formatNumber(final.final_test_loss), final.final_test_loss],
    ["final test accuracy", formatPercent(final.final_test_accuracy), final.final_test_accuracy],
    ["training time (s)", formatDuration(final.seconds), final.seconds],
  ];
  if (final.stopped_by) {
    rows.push(["stopped by", STOP_REASON_TEXT[final.stopped_by] ?? final.stopped_by, final.stopped_by]);
  }
  for (const [n, value] of Object.entries(final.final_test_accuracy_per_n ?? {})) {
    rows.push([`final test accuracy, n = ${n}`, formatPercent(value), value]);
  }
  const classification = final.final_test_accuracy != null;
  for (const [name, value] of Object.entries(final.baselines ?? {})) {
    rows.push([
      `${name} baseline (${classification ? "accuracy" : "loss"})`,
      classification ? formatPercent(value) : formatNumber(value),
      value,
    ]);
  }
  body.replaceChildren(...rows.map(([key, value, raw]) => keyValueRow(key, value, raw)));
}

function keyValueRow(key, value, raw) {
  const rawValue = raw === undefined ? undefined : String(raw ?? "");
  return element(
    "tr",
    {},
    element("th", { scope: "row" }, key),
    element("td", { "data-value": rawValue }, value),
  );
}

function renderConfig() {
  const body = document.querySelector("#config-table tbody");
  body.replaceChildren(
    ...flattenConfig(readableConfig(run.config)).map(([key, value]) =>
      keyValueRow(key, formatValue(value)),
    ),
  );
}

function appendLog(message, time) {
  const log = document.getElementById("run-log");
  log.hidden = false;
  document.getElementById("log-empty").hidden = true;
  const stamp = time ? `${formatTime(time)}  ` : "";
  log.append(element("li", {}, `${stamp}${message}`));
  while (log.children.length > MAX_LOG_LINES) log.firstElementChild.remove();
}

/** Replace the Log panel's lines with the stored lines of a snapshot. */
function showLogs(lines) {
  const log = document.getElementById("run-log");
  log.replaceChildren();
  log.hidden = true;
  document.getElementById("log-empty").hidden = false;
  for (const line of lines) appendLog(line.message, line.time);
}

function setRun(next) {
  const hadFinal = Boolean(run?.final_metrics);
  run = next;
  document.getElementById("download-json").download = `${run.name}-metrics.json`;
  renderHeader();
  renderProgress();
  renderFinalMetrics();
  if (!hadFinal && run.final_metrics) drawCharts(); // draws the baselines
}

function handleMessage(message) {
  if (message.type === "snapshot") {
    metrics = message.metrics ?? [];
    run = null;
    setRun(message.run);
    renderConfig();
    drawCharts();
    showLogs(message.logs ?? []);
    page.dataset.metricCount = metrics.length;
  } else if (message.type === "metric") {
    appendMetric(message);
    page.dataset.metricCount = metrics.length;
    renderProgress();
  } else if (message.type === "status") {
    setRun(message.run);
  } else if (message.type === "log") {
    appendLog(message.message, message.time);
  }
}

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  retrying: "Connection lost, retrying…",
  closed: "Not live: reload the page to reconnect",
};

connectSocket(`/ws/runs/${encodeURIComponent(runId)}`, {
  onMessage: handleMessage,
  onState: (state) => {
    const connection = document.getElementById("run-connection");
    connection.textContent = CONNECTION_TEXT[state];
    connection.dataset.state = state;
  },
});

logScale.addEventListener("change", () => setLogScale([lossChart], logScale.checked));

document.getElementById("cancel-button").addEventListener("click", async () => {
  try {
    const updated = await apiFetch(`/api/runs/${runId}/cancel`, { method: "POST" });
    if (updated?.id) setRun(updated);
    showMessage("Cancel requested: the run stops after its current step.");
  } catch (error) {
    showError(error);
  }
});

addTableExport(document.getElementById("final-table"), `${runId}-final-metrics`);
addTableExport(document.getElementById("config-table"), `${runId}-config`);
