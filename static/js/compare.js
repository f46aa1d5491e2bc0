// Compare page: overlaid test curves, final metrics against the task baselines, and the
// config fields that differ between the runs named in ?runs=a,b,... With two runs it also
// draws their difference, and with &live=1 it follows the runs' websockets as they train.

import { apiFetch, showError } from "./api.js";
import {
  element,
  flattenConfig,
  formatNumber,
  formatPercent,
  formatValue,
  statusBadge,
} from "./format.js";
import { COLORS, PLOT_CONFIG, baseLayout, horizontalLine, setLogScale } from "./plots.js";
import { connectSocket } from "./socket.js";
import { addTableExport } from "./table_export.js";

const $ = (id) => document.getElementById(id);
const LIVE_REDRAW_MS = 300;

// The loaded runs with their metric rows, kept for redraws on control changes.
let shownEntries = [];

function requestedIds() {
  const value = new URLSearchParams(window.location.search).get("runs") ?? "";
  return [
    ...new Set(
      value
        .split(",")
        .map((id) => id.trim())
        .filter(Boolean),
    ),
  ];
}

async function loadRun(id) {
  const [run, metrics] = await Promise.all([
    apiFetch(`/api/runs/${encodeURIComponent(id)}`),
    apiFetch(`/api/runs/${encodeURIComponent(id)}/metrics`),
  ]);
  return { run, metrics };
}

/** Exponential moving average: s_i = w * s_(i-1) + (1 - w) * v_i, starting at s_0 = v_0. */
export function smooth(values, weight) {
  let previous = null;
  return values.map((value) => {
    previous = previous === null ? value : weight * previous + (1 - weight) * value;
    return previous;
  });
}

function smoothingWeight() {
  return Number($("compare-smoothing").value) || 0;
}

function seriesKey(measure) {
  return `${$("compare-series").value}_${measure}`;
}

/** Return the steps and smoothed values of `key` in a run's metric rows, skipping nulls. */
function series(metrics, key) {
  const rows = metrics.filter((row) => row[key] !== null && row[key] !== undefined);
  return {
    x: rows.map((row) => row.step),
    y: smooth(
      rows.map((row) => row[key]),
      smoothingWeight(),
    ),
  };
}

function curveTraces(entries, key) {
  return entries.map(({ run, metrics }, index) => {
    const { x, y } = series(metrics, key);
    return {
      x,
      y,
      name: run.name,
      mode: "lines+markers",
      marker: { size: 4 },
      line: { color: COLORS[index % COLORS.length], width: 2 },
    };
  });
}

/**
 * Baseline lines of the runs' task when every run has the same task, taken from the first
 * finished run (each run scores the baselines on its own held-out set).
 */
function baselineOverlay(entries, forAccuracy) {
  const tasks = new Set(entries.map(({ run }) => run.task));
  const final = entries.map(({ run }) => run.final_metrics).find(Boolean);
  if (tasks.size !== 1 || !final) return {};
  if ((final.final_test_accuracy != null) !== forAccuracy) return {};
  const lines = Object.entries(final.baselines ?? {}).map(([name, value], index) =>
    horizontalLine(
      value,
      `${name} baseline ${formatNumber(value)}`,
      COLORS[(entries.length + index) % COLORS.length],
    ),
  );
  return {
    shapes: lines.map((line) => line.shape),
    annotations: lines.map((line) => line.annotation),
  };
}

function drawCurves(entries) {
  const which = $("compare-series").value; // "test" or "train"
  const lossLayout = {
    ...baseLayout({
      title: `${which === "test" ? "Test" : "Train"} loss`,
      xTitle: "step",
      yTitle: `${which} loss`,
      uirevision: "compare",
    }),
    ...baselineOverlay(entries, false),
  };
  lossLayout.yaxis.type = $("compare-log-scale").checked ? "log" : "linear";
  window.Plotly.react(
    $("compare-loss-chart"),
    curveTraces(entries, seriesKey("loss")),
    lossLayout,
    PLOT_CONFIG,
  );

  const accuracyKey = seriesKey("accuracy");
  const hasAccuracy = entries.some(({ metrics }) => metrics.some((row) => row[accuracyKey] != null));
  $("compare-accuracy-chart").hidden = !hasAccuracy;
  if (hasAccuracy) {
    const layout = {
      ...baseLayout({
        title: `${which === "test" ? "Test" : "Train"} accuracy`,
        xTitle: "step",
        yTitle: `${which} accuracy`,
        uirevision: "compare",
      }),
      ...baselineOverlay(entries, true),
    };
    layout.yaxis.range = [0, 1];
    window.Plotly.react(
      $("compare-accuracy-chart"),
      curveTraces(entries, accuracyKey),
      layout,
      PLOT_CONFIG,
    );
  }
  drawDifference(entries);
}

/** For two runs, draw the first run's smoothed loss minus the second's at common steps. */
function drawDifference(entries) {
  const chart = $("compare-difference-chart");
  chart.hidden = entries.length !== 2;
  if (entries.length !== 2) return;
  const key = seriesKey("loss");
  const [first, second] = entries.map(({ metrics }) => series(metrics, key));
  const secondByStep = new Map(second.x.map((step, index) => [step, second.y[index]]));
  const steps = first.x.filter((step) => secondByStep.has(step));
  const firstByStep = new Map(first.x.map((step, index) => [step, first.y[index]]));
  const names = entries.map(({ run }) => run.name);
  const trace = {
    x: steps,
    y: steps.map((step) => firstByStep.get(step) - secondByStep.get(step)),
    name: `${names[0]} − ${names[1]}`,
    mode: "lines+markers",
    marker: { size: 4 },
    line: { color: COLORS[2], width: 2 },
  };
  const layout = baseLayout({
    title: `${$("compare-series").value} loss difference: ${names[0]} − ${names[1]}`,
    xTitle: "step",
    yTitle: "difference (below 0: first run lower)",
    uirevision: "compare-difference",
  });
  layout.shapes = [horizontalLine(0, "equal").shape];
  window.Plotly.react(chart, [trace], layout, PLOT_CONFIG);
  chart.dataset.points = String(steps.length);
}

function redraw() {
  drawCurves(shownEntries);
  renderFinalTable(shownEntries);
}

/**
 * Follow every run's websocket: the snapshot replaces its rows, metric events are appended
 * and status events update the run. Redraws are batched to one per LIVE_REDRAW_MS.
 */
function followLive(entries) {
  let timer = null;
  const schedule = () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      redraw();
    }, LIVE_REDRAW_MS);
  };
  const connection = $("compare-connection");
  connection.hidden = false;
  for (const entry of entries) {
    connectSocket(`/ws/runs/${encodeURIComponent(entry.run.id)}`, {
      onState: (state) => {
        connection.textContent = state === "open" ? "Live" : state;
        connection.dataset.state = state;
      },
      onMessage: (message) => {
        if (message.type === "snapshot") {
          entry.run = message.run;
          entry.metrics = message.metrics;
        } else if (message.type === "metric") {
          entry.metrics.push(message);
        } else if (message.type === "status") {
          entry.run = message.run;
        } else {
          return;
        }
        schedule();
      },
    });
  }
}

function headerRow(names) {
  return element("tr", {}, ...names.map((name) => element("th", { scope: "col" }, name)));
}

/**
 * Fill the final-metrics table: one row per run, then each baseline of its task (a loss for
 * MSE tasks, an accuracy for classification).
 */
function renderFinalTable(entries) {
  const baselineNames = [
    ...new Set(entries.flatMap(({ run }) => Object.keys(run.final_metrics?.baselines ?? {}))),
  ].sort();
  const table = $("compare-final-table");
  table
    .querySelector("thead")
    .replaceChildren(
      headerRow([
        "Run",
        "Model",
        "Task",
        "Status",
        "Parameters",
        "Test loss",
        "Test accuracy",
        ...baselineNames.map((name) => `${name} baseline`),
      ]),
    );
  table.querySelector("tbody").replaceChildren(
    ...entries.map(({ run }) => {
      const final = run.final_metrics ?? {};
      const classification = final.final_test_accuracy != null;
      const baselines = final.baselines ?? {};
      return element(
        "tr",
        { dataset: { runId: run.id } },
        element("th", { scope: "row" }, element("a", { href: `/runs/${run.id}` }, run.name)),
        element("td", {}, run.model),
        element("td", {}, run.task),
        element("td", {}, statusBadge(run.status)),
        element("td", { className: "number" }, formatNumber(run.param_count)),
        element("td", { className: "number" }, formatNumber(final.final_test_loss)),
        element("td", { className: "number" }, formatPercent(final.final_test_accuracy)),
        ...baselineNames.map((name) => {
          const value = baselines[name];
          let text = "–";
          if (value !== undefined)
            text = classification ? formatPercent(value) : formatNumber(value);
          return element("td", { className: "number" }, text);
        }),
      );
    }),
  );
}

/** Show only the config keys whose values are not the same in every run. */
function renderConfigDiff(entries) {
  const flattened = entries.map(({ run }) => new Map(flattenConfig(run.config)));
  const keys = [...new Set(flattened.flatMap((config) => [...config.keys()]))].sort();
  const differing = keys.filter(
    (key) => new Set(flattened.map((config) => JSON.stringify(config.get(key) ?? null))).size > 1,
  );
  const table = $("compare-config-table");
  table.hidden = differing.length === 0;
  $("compare-config-same").hidden = differing.length > 0;
  table
    .querySelector("thead")
    .replaceChildren(headerRow(["Field", ...entries.map(({ run }) => run.name)]));
  table
    .querySelector("tbody")
    .replaceChildren(
      ...differing.map((key) =>
        element(
          "tr",
          { dataset: { field: key } },
          element("th", { scope: "row" }, key),
          ...flattened.map((config) =>
            element("td", {}, config.has(key) ? formatValue(config.get(key)) : "–"),
          ),
        ),
      ),
    );
}

async function renderChoices(selected) {
  const runs = await apiFetch("/api/runs");
  $("compare-choices").replaceChildren(
    ...runs.map((run) => {
      const id = `choice-${run.id}`;
      return element(
        "div",
        { className: "field checkbox" },
        element("input", {
          type: "checkbox",
          id,
          value: run.id,
          checked: selected.includes(run.id),
          "data-testid": id,
        }),
        element("label", { for: id }, `${run.name} (${run.status})`),
      );
    }),
  );
}

async function start() {
  const ids = requestedIds();
  const choices = renderChoices(ids).catch(showError);
  if (ids.length === 0) {
    showError("Choose at least two runs below, or select them on the dashboard and press Compare.");
    await choices;
    return;
  }
  const results = await Promise.allSettled(ids.map(loadRun));
  const failed = results
    .map((item, index) => [item, ids[index]])
    .filter(([item]) => item.status === "rejected");
  if (failed.length)
    showError(failed.map(([item, id]) => `Run ${id}: ${item.reason.message}`).join("; "));
  const entries = results.filter((item) => item.status === "fulfilled").map((item) => item.value);
  shownEntries = entries;
  drawCurves(entries);
  renderFinalTable(entries);
  renderConfigDiff(entries);
  document.body.dataset.compared = String(entries.length);
  if (new URLSearchParams(window.location.search).get("live") === "1") followLive(entries);
  await choices;
}

$("compare-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ids = [...document.querySelectorAll("#compare-choices input:checked")].map(
    (input) => input.value,
  );
  window.location.search = ids.length ? `?runs=${ids.join(",")}` : "";
});
$("compare-log-scale").addEventListener("change", (event) =>
  setLogScale([$("compare-loss-chart")], event.target.checked),
);
$("compare-smoothing").addEventListener("input", (event) => {
  $("compare-smoothing-value").textContent = event.target.value;
  drawCurves(shownEntries);
});
$("compare-series").addEventListener("change", () => drawCurves(shownEntries));
addTableExport($("compare-final-table"), "compare-final-metrics");
addTableExport($("compare-config-table"), "compare-config-differences");

start();
