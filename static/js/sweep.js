// Sweep page: a heatmap of the final test metric over the grid (mean over seeds), kept live
// from /ws/runs, a table of the cells, and the runs of a clicked cell.

import { apiFetch, showError, showMessage } from "./api.js";
import { element, formatNumber, statusBadge } from "./format.js";
import { PLOT_CONFIG, baseLayout } from "./plots.js";
import { connectSocket } from "./socket.js";
import { addTableExport } from "./table_export.js";

const REFRESH_DELAY_MS = 250;
const METRIC_LABELS = {
  final_test_loss: "final test loss",
  final_test_accuracy: "final test accuracy",
};

const $ = (id) => document.getElementById(id);
const sweepId = $("sweep-page").dataset.sweepId;
const heatmap = $("sweep-heatmap");

let sweep = null;
let refreshTimer = null;
// The view: the axes along x and y, and the shown value index of every other axis.
const view = { x: null, y: null, fixed: {} };

function label(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function cellAt(index) {
  return sweep.cells.find((cell) => cell.index.every((value, axis) => value === index[axis]));
}

/** Return the cell index of heatmap column `column` and row `row` in the current view. */
function indexFor(column, row) {
  return sweep.axes.map((_, axis) => {
    if (axis === view.x) return column;
    if (axis === view.y) return row;
    return view.fixed[axis] ?? 0;
  });
}

function describeCell(cell) {
  const runs = new Map(sweep.runs.map((run) => [run.id, run]));
  const metric = sweep.metric;
  const lines = Object.entries(cell.values).map(([key, value]) => `${key} = ${label(value)}`);
  const stats =
    cell.mean === null
      ? "no completed run yet"
      : `mean ${formatNumber(cell.mean)}` +
        (cell.std === null ? "" : ` ± ${formatNumber(cell.std)} (std)`) +
        ` over ${cell.metric_values.length} seeds`;
  lines.push(stats);
  for (const runId of cell.run_ids) {
    const run = runs.get(runId);
    if (!run) continue;
    const value = run.final_metrics?.[metric];
    lines.push(`seed ${run.seed}: ${value == null ? run.status : formatNumber(value)}`);
  }
  return lines.join("<br>");
}

function drawHeatmap() {
  const xAxis = sweep.axes[view.x];
  const yAxis = view.y === null ? null : sweep.axes[view.y];
  const rows = yAxis ? yAxis.values.length : 1;
  const z = [];
  const text = [];
  let filled = 0;
  for (let row = 0; row < rows; row += 1) {
    z.push([]);
    text.push([]);
    for (let column = 0; column < xAxis.values.length; column += 1) {
      const cell = cellAt(indexFor(column, row));
      z[row].push(cell?.mean ?? null);
      text[row].push(cell ? describeCell(cell) : "");
      if (cell?.mean != null) filled += 1;
    }
  }

  const metricLabel = METRIC_LABELS[sweep.metric] ?? sweep.metric;
  const trace = {
    type: "heatmap",
    z,
    x: xAxis.values.map(label),
    y: yAxis ? yAxis.values.map(label) : [metricLabel],
    text,
    hovertemplate: "%{text}<extra></extra>",
    texttemplate: "%{z:.4g}",
    colorscale: "Viridis",
    // Lower loss is better: the best cells are the brightest either way.
    reversescale: sweep.metric === "final_test_loss",
    colorbar: { title: { text: `mean ${metricLabel}` }, thickness: 12 },
    xgap: 2,
    ygap: 2,
  };
  const layout = baseLayout({
    title: `Mean ${metricLabel} over seeds ${sweep.seeds.join(", ")}`,
    xTitle: xAxis.key,
    yTitle: yAxis ? yAxis.key : "",
    uirevision: `${sweepId}-${view.x}-${view.y}`,
  });
  layout.xaxis.type = "category";
  layout.yaxis.type = "category";
  window.Plotly.react(heatmap, [trace], layout, PLOT_CONFIG);

  // Tests and scripts read how many cells have a mean from these attributes.
  heatmap.dataset.filled = String(filled);
  heatmap.dataset.cells = String(rows * xAxis.values.length);

  if (!heatmap.dataset.clickBound) {
    heatmap.on("plotly_click", (event) => {
      // A heatmap point's pointNumber is [row, column].
      const [row, column] = event.points[0].pointNumber;
      showCell(cellAt(indexFor(column, view.y === null ? 0 : row)));
    });
    heatmap.dataset.clickBound = "true";
  }
}

function showCell(cell) {
  if (!cell) return;
  const runs = new Map(sweep.runs.map((run) => [run.id, run]));
  $("cell-heading").textContent = Object.entries(cell.values)
    .map(([key, value]) => `${key} = ${label(value)}`)
    .join(", ");
  $("cell-runs").replaceChildren(
    ...cell.run_ids.map((runId) => {
      const run = runs.get(runId);
      const value = run?.final_metrics?.[sweep.metric];
      return element(
        "li",
        {},
        element("a", { href: `/runs/${runId}` }, run?.name ?? runId),
        " ",
        statusBadge(run?.status ?? "unknown"),
        value == null ? "" : ` ${formatNumber(value)}`,
      );
    }),
  );
  $("cell-compare").href = `/compare?runs=${cell.run_ids.join(",")}`;
  $("cell-panel").hidden = false;
  $("cell-panel").dataset.cell = cell.index.join(",");
}

function axisSelect(id, text, value, options, onChange) {
  const select = element(
    "select",
    { id, "data-testid": id, onchange: (event) => onChange(Number(event.target.value)) },
    ...options.map(([optionValue, optionText]) =>
      element("option", { value: String(optionValue) }, optionText),
    ),
  );
  select.value = String(value);
  return element("div", { className: "field" }, element("label", { for: id }, text), select);
}

/** Selectors for the x and y axes and, for a grid of three or more axes, the other values. */
function renderAxisControls() {
  const axes = sweep.axes.map((axis, index) => [index, axis.key]);
  const controls = [];
  if (sweep.axes.length > 1) {
    controls.push(
      axisSelect("axis-x", "x axis", view.x, axes, (value) => {
        if (value === view.y) view.y = view.x;
        view.x = value;
        renderAxisControls();
        drawHeatmap();
      }),
      axisSelect("axis-y", "y axis", view.y, axes, (value) => {
        if (value === view.x) view.x = view.y;
        view.y = value;
        renderAxisControls();
        drawHeatmap();
      }),
    );
  }
  sweep.axes.forEach((axis, index) => {
    if (index === view.x || index === view.y) return;
    const options = axis.values.map((value, valueIndex) => [valueIndex, label(value)]);
    controls.push(
      axisSelect(`axis-fixed-${index}`, axis.key, view.fixed[index] ?? 0, options, (value) => {
        view.fixed[index] = value;
        drawHeatmap();
      }),
    );
  });
  $("axis-controls").replaceChildren(...controls);
}

function renderCellsTable() {
  const keys = sweep.axes.map((axis) => axis.key);
  const table = $("sweep-cells");
  table
    .querySelector("thead")
    .replaceChildren(
      element(
        "tr",
        {},
        ...[...keys, "runs finished", "mean", "std", "values"].map((name) =>
          element("th", { scope: "col" }, name),
        ),
      ),
    );
  table.querySelector("tbody").replaceChildren(
    ...sweep.cells.map((cell) =>
      element(
        "tr",
        { dataset: { cell: cell.index.join(",") } },
        ...keys.map((key) => element("td", {}, label(cell.values[key]))),
        element("td", { className: "number" }, `${cell.finished} / ${cell.run_ids.length}`),
        element("td", { className: "number" }, formatNumber(cell.mean)),
        element("td", { className: "number" }, formatNumber(cell.std)),
        element("td", {}, cell.metric_values.map((value) => formatNumber(value)).join(", ")),
      ),
    ),
  );
}

function renderSummary() {
  const counts = sweep.counts;
  const total = sweep.runs.length;
  const finished = total - counts.queued - counts.running;
  $("sweep-name").textContent = sweep.name;
  $("sweep-status").replaceChildren(statusBadge(sweep.status));
  $("sweep-summary").textContent =
    `${sweep.base.model} on ${sweep.base.task}: ${finished} of ${total} runs finished ` +
    `(${counts.completed} completed, ${counts.running} running, ${counts.queued} queued` +
    `${counts.failed ? `, ${counts.failed} failed` : ""}` +
    `${counts.cancelled ? `, ${counts.cancelled} cancelled` : ""}).`;
  $("sweep-progress").max = Math.max(1, total);
  $("sweep-progress").value = finished;
  $("sweep-cancel").disabled = sweep.status !== "running";
}

async function refresh() {
  sweep = await apiFetch(`/api/sweeps/${sweepId}`);
  if (view.x === null) {
    view.x = sweep.axes.length > 1 ? 1 : 0;
    view.y = sweep.axes.length > 1 ? 0 : null;
    renderAxisControls();
  }
  renderSummary();
  drawHeatmap();
  renderCellsTable();
  const open = $("cell-panel").dataset.cell;
  if (open && !$("cell-panel").hidden) showCell(cellAt(open.split(",").map(Number)));
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().catch(showError), REFRESH_DELAY_MS);
}

$("sweep-cancel").addEventListener("click", async () => {
  $("sweep-cancel").disabled = true;
  try {
    await apiFetch(`/api/sweeps/${sweepId}/cancel`, { method: "POST" });
    showMessage("Cancel requested: queued runs stop at once, running ones between steps.");
    scheduleRefresh();
  } catch (error) {
    showError(error);
  }
});

connectSocket("/ws/runs", {
  onState: (state) => {
    $("sweep-connection").textContent = state === "open" ? "Live" : state;
  },
  onMessage: (message) => {
    if (message.type === "snapshot") scheduleRefresh();
    else if (message.type === "status" && message.run.sweep_id === sweepId) scheduleRefresh();
  },
});

addTableExport($("sweep-cells"), `sweep-${sweepId}-cells`);
refresh().catch(showError);
