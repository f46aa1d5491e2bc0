// Explorer analysis panel: POST /api/runs/{id}/analysis over a batch, for the chosen run and
// optionally a second run on the same sequences, plus the trace download of one sequence.
// Shapes follow the API: attention_received and entropy [T][L][H][N+1], input_attention
// [T][L][H][N], input_gate, forget_gate and memory_change [T][N] (LSTM gates [T]),
// slot_usage [N], object_*_correlation [N][J], connectivity.mean [T].

import { apiFetch, showError } from "./api.js";
import { element, formatNumber } from "./format.js";
import { COLORS, PLOT_CONFIG, baseLayout, horizontalLine } from "./plots.js";
import { addTableExport } from "./table_export.js";
import { slotLabels } from "./explore_trace.js";

const $ = (id) => document.getElementById(id);
const runSelect = $("explore-run");
const seedInput = $("explore-seed");
const otherSelect = $("analysis-other");

let runs = [];
let shown = null; // {main, other} analyses of the last request

function seed() {
  return Math.max(0, Number.parseInt(seedInput.value, 10) || 0);
}

function sameTask(a, b) {
  return (
    a.config.task === b.config.task &&
    JSON.stringify(a.config.task_options) === JSON.stringify(b.config.task_options)
  );
}

/** Offer as second runs the trained runs of the chosen run's task, the other model first. */
function renderOtherRuns() {
  const current = runs.find((run) => run.id === runSelect.value);
  const previous = otherSelect.value;
  const candidates = current
    ? runs
        .filter((run) => run.id !== current.id && sameTask(run, current))
        .sort((a, b) => (a.model === current.model) - (b.model === current.model))
    : [];
  otherSelect.replaceChildren(
    element("option", { value: "" }, "no other run"),
    ...candidates.map((run) => element("option", { value: run.id }, `${run.name} (${run.model})`)),
  );
  if (candidates.some((run) => run.id === previous)) otherSelect.value = previous;
}

function updateTraceLink() {
  const link = $("trace-download");
  link.hidden = !runSelect.value;
  if (!runSelect.value) return;
  link.href = `/api/runs/${encodeURIComponent(runSelect.value)}/trace.npz?seed=${seed()}`;
  link.download = `${runSelect.value}-trace-seed${seed()}.npz`;
}

function options(select, count, label) {
  const previous = Number(select.value) || 0;
  select.replaceChildren(
    ...Array.from({ length: count }, (_, index) =>
      element("option", { value: String(index) }, `${label} ${index}`),
    ),
  );
  select.value = String(Math.min(previous, count - 1));
}

function steps(values) {
  return values.map((_, step) => step);
}

/**
 * Lay out an analysis chart: the title is below the modebar's row, and the legend is
 * to the right of the plot, clear of the x axis title.
 */
function layoutFor(title, xTitle, yTitle) {
  const layout = baseLayout({ title, xTitle, yTitle, uirevision: "analysis" });
  layout.title = { ...layout.title, yref: "container", y: 1, yanchor: "top", pad: { t: 34 } };
  layout.margin = { l: 56, r: 12, t: 76, b: 52 };
  layout.legend = { orientation: "v", x: 1.02, xanchor: "left", y: 1, yanchor: "top" };
  return layout;
}

function lines(
  div,
  series,
  { title, xTitle = "timestep", yTitle, range, shapes = [], annotations = [] },
) {
  const traces = series.map(({ name, y, dash }, index) => ({
    x: steps(y),
    y,
    name,
    mode: "lines+markers",
    marker: { size: 4 },
    line: { color: COLORS[index % COLORS.length], width: 1.5, dash },
  }));
  const layout = layoutFor(title, xTitle, yTitle);
  if (range) layout.yaxis.range = range;
  layout.shapes = shapes;
  layout.annotations = annotations;
  window.Plotly.react(div, traces, layout, PLOT_CONFIG);
}

/** Per-slot curves of a [T][N] array, or of [T][L][H][N] at the chosen block and head. */
function slotSeries(values, pick = (row) => row, names = null) {
  const picked = values.map(pick);
  return picked[0].map((_, slot) => ({
    name: names ? names[slot] : `slot ${slot}`,
    y: picked.map((row) => row[slot]),
  }));
}

function runLabel(analysis) {
  const run = runs.find((item) => item.id === analysis.run_id);
  return `${run ? run.name : analysis.run_id} (${analysis.model})`;
}

/** Draw each run's gradient norm per input step as a share of its total over the steps. */
function drawConnectivity(analyses) {
  const which = $("analysis-connectivity").value; // "mean" or "first"
  const traces = analyses.map((analysis, index) => {
    const norms = analysis.connectivity[which];
    const total = norms.reduce((sum, value) => sum + (value ?? 0), 0) || 1;
    return {
      x: steps(norms),
      y: norms.map((value) => (value ?? 0) / total),
      customdata: norms,
      name: runLabel(analysis),
      mode: "lines+markers",
      marker: { size: 5 },
      line: { color: COLORS[index % COLORS.length], width: 2 },
      hovertemplate: "step %{x}: share %{y:.3f}, gradient norm %{customdata:.3g}<extra></extra>",
    };
  });
  const layout = layoutFor("Connectivity per input step", "input step", "share");
  window.Plotly.react($("connectivity-chart"), traces, layout, PLOT_CONFIG);
  $("connectivity-chart").dataset.runs = String(traces.length);
}

function drawUsage(analysis) {
  const usage = analysis.slot_usage;
  const unused = new Set(analysis.unused_slots);
  const trace = {
    type: "bar",
    x: usage.map((_, slot) => `slot ${slot}`),
    y: usage,
    marker: { color: usage.map((_, slot) => (unused.has(slot) ? "#a40e26" : COLORS[0])) },
    hovertemplate: "%{x}: %{y:.3f} uniform shares<extra></extra>",
  };
  const layout = layoutFor("Slot usage", "slot", "uniform shares");
  const threshold = horizontalLine(analysis.unused_threshold, "unused below");
  // The label is right of the plot, where no bar can cover it.
  layout.margin.r = 96;
  layout.shapes = [threshold.shape];
  layout.annotations = [{ ...threshold.annotation, x: 1.01, xanchor: "left", yanchor: "middle" }];
  window.Plotly.react($("slot-usage-chart"), [trace], layout, PLOT_CONFIG);
}

function drawObjectCorrelation(div, values, title) {
  div.hidden = !values;
  if (!values) return;
  const trace = {
    type: "heatmap",
    z: values,
    x: values[0].map((_, object) => `object ${object}`),
    y: values.map((_, slot) => `slot ${slot}`),
    zmin: -1,
    zmax: 1,
    colorscale: "RdBu",
    texttemplate: "%{z:.2f}",
    hovertemplate: "%{y}, %{x}: r = %{z:.3f}<extra></extra>",
    colorbar: { thickness: 12 },
  };
  const layout = layoutFor(title, "observed object", "slot");
  layout.yaxis.autorange = "reversed";
  window.Plotly.react(div, [trace], layout, PLOT_CONFIG);
}

function drawRmc(analysis) {
  const block = Number($("analysis-block").value) || 0;
  const head = Number($("analysis-head").value) || 0;
  const at = (row) => row[block][head];
  const rows = analysis.num_slots + 1;
  const received = analysis.attention_received.map(at); // [T][N+1]
  const heatmap = {
    type: "heatmap",
    z: slotLabels(rows).map((_, row) => received.map((step) => step[row])),
    x: steps(received),
    y: slotLabels(rows),
    colorscale: "Viridis",
    zmin: 0,
    hovertemplate: "t = %{x}, %{y}: %{z:.3f}<extra></extra>",
    colorbar: { thickness: 12 },
  };
  const receivedLayout = layoutFor(`Attention received, block ${block} head ${head}`, "timestep", "");
  receivedLayout.yaxis.autorange = "reversed";
  window.Plotly.react($("received-chart"), [heatmap], receivedLayout, PLOT_CONFIG);

  lines($("input-attention-chart"), slotSeries(analysis.input_attention, at), {
    title: "Weight on the input row",
    yTitle: "attention weight",
    range: [0, 1],
  });
  const maxEntropy = horizontalLine(analysis.max_entropy, "max entropy (uniform attention)");
  lines($("entropy-chart"), slotSeries(analysis.entropy, at, slotLabels(rows)), {
    title: "Attention entropy per query row",
    yTitle: "nats",
    shapes: [maxEntropy.shape],
    annotations: [
      { ...maxEntropy.annotation, x: 0, xanchor: "left", bgcolor: "rgba(255,255,255,0.8)" },
    ],
  });
  lines($("memory-change-chart"), slotSeries(analysis.memory_change), {
    title: "Memory change per step",
    yTitle: "L2 norm",
  });
  const gates = analysis.input_gate
    ? [
        ...slotSeries(analysis.input_gate).map((item) => ({ ...item, name: `input ${item.name}` })),
        ...slotSeries(analysis.forget_gate).map((item) => ({
          ...item,
          name: `forget ${item.name}`,
          dash: "dot",
        })),
      ]
    : [];
  $("batch-gates-chart").hidden = gates.length === 0;
  if (gates.length) {
    lines($("batch-gates-chart"), gates, {
      title: "Gate openness per slot",
      yTitle: "mean over units",
      range: [0, 1],
    });
  }
  drawUsage(analysis);
  drawObjectCorrelation(
    $("object-attention-chart"),
    analysis.object_attention_correlation,
    "Slot–object r, input attention",
  );
  drawObjectCorrelation(
    $("object-update-chart"),
    analysis.object_update_correlation,
    "Slot–object r, memory change",
  );
  renderSlotTable(analysis);
}

function mean(values) {
  const finite = values.filter((value) => value !== null && value !== undefined);
  return finite.length ? finite.reduce((sum, value) => sum + value, 0) / finite.length : null;
}

function renderSlotTable(analysis) {
  const slots = analysis.slot_usage.length;
  const objects = analysis.object_attention_correlation?.[0]?.length ?? 0;
  const headers = [
    "slot",
    "usage (uniform shares)",
    "unused",
    "mean input gate",
    "mean forget gate",
    "mean memory change",
    ...Array.from({ length: objects }, (_, object) => `r(input attention, object ${object})`),
  ];
  const column = (values, slot) => (values ? mean(values.map((row) => row[slot])) : null);
  const table = $("slot-table");
  table
    .querySelector("thead")
    .replaceChildren(
      element("tr", {}, ...headers.map((text) => element("th", { scope: "col" }, text))),
    );
  table.querySelector("tbody").replaceChildren(
    ...Array.from({ length: slots }, (_, slot) =>
      element(
        "tr",
        {},
        element("th", { scope: "row" }, `slot ${slot}`),
        element("td", { className: "number" }, formatNumber(analysis.slot_usage[slot])),
        element("td", {}, analysis.unused_slots.includes(slot) ? "yes" : "no"),
        element("td", { className: "number" }, formatNumber(column(analysis.input_gate, slot))),
        element("td", { className: "number" }, formatNumber(column(analysis.forget_gate, slot))),
        element("td", { className: "number" }, formatNumber(column(analysis.memory_change, slot))),
        ...Array.from({ length: objects }, (_, object) =>
          element(
            "td",
            { className: "number" },
            formatNumber(analysis.object_attention_correlation[slot][object]),
          ),
        ),
      ),
    ),
  );
}

function drawLstm(analysis) {
  $("batch-gates-chart").hidden = false;
  lines(
    $("batch-gates-chart"),
    [
      { name: "input gate", y: analysis.input_gate },
      { name: "forget gate", y: analysis.forget_gate },
      { name: "output gate", y: analysis.output_gate },
    ],
    { title: "LSTM gates, mean over units", yTitle: "activation", range: [0, 1] },
  );
}

/** Hide the controls, text and charts about memory slots, blocks and heads for an LSTM. */
function showRmcParts(isRmc) {
  for (const node of document.querySelectorAll("#analysis-panel .rmc-only")) {
    node.hidden = !isRmc;
  }
}

function render() {
  const { main, other } = shown;
  const isRmc = main.model === "rmc";
  showRmcParts(isRmc);
  if (isRmc) {
    options($("analysis-block"), main.attention_received[0].length, "block");
    options($("analysis-head"), main.attention_received[0][0].length, "head");
    drawRmc(main);
  } else {
    drawLstm(main);
  }
  drawConnectivity(other ? [main, other] : [main]);
  const unused = isRmc
    ? ` Unused slots: ${main.unused_slots.length ? main.unused_slots.join(", ") : "none"}.`
    : "";
  $("analysis-summary").textContent =
    `${main.model.toUpperCase()} over ${main.batch_size} sequences of ${main.task} ` +
    `(seed ${main.seed}).${unused}`;
}

async function analyse(event) {
  event.preventDefault();
  const runId = runSelect.value;
  if (!runId) {
    showError("Choose a trained run first.");
    return;
  }
  const body = { seed: seed(), batch_size: Number.parseInt($("analysis-batch").value, 10) || 64 };
  const button = $("analysis-button");
  button.disabled = true;
  $("analysis-summary").textContent = "Analysing…";
  try {
    const requests = [runId, otherSelect.value].filter(Boolean).map((id) =>
      apiFetch(`/api/runs/${encodeURIComponent(id)}/analysis`, { method: "POST", body }),
    );
    const [main, other] = await Promise.all(requests);
    shown = { main, other };
    $("analysis-results").hidden = false;
    render();
    $("analysis-panel").dataset.analysed = runId;
  } catch (error) {
    $("analysis-summary").textContent = "";
    showError(error);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  runs = (await apiFetch("/api/runs")).filter((run) => run.has_checkpoint);
  const refresh = () => {
    renderOtherRuns();
    updateTraceLink();
    const current = runs.find((run) => run.id === runSelect.value);
    if (current) showRmcParts(current.model === "rmc");
  };
  // The explorer fills and sets the run selector itself; follow it.
  new MutationObserver(refresh).observe(runSelect, { childList: true });
  runSelect.addEventListener("change", refresh);
  seedInput.addEventListener("input", updateTraceLink);
  for (const id of ["analysis-block", "analysis-head"]) {
    $(id).addEventListener("change", () => shown?.main.model === "rmc" && drawRmc(shown.main));
  }
  $("analysis-connectivity").addEventListener("change", () => {
    if (shown) drawConnectivity(shown.other ? [shown.main, shown.other] : [shown.main]);
  });
  $("analysis-form").addEventListener("submit", analyse);
  addTableExport($("slot-table"), "slot-analysis");
  // The slot table's download buttons follow it, and hide with it for an LSTM.
  $("slot-table").closest(".table-scroll").nextElementSibling.classList.add("rmc-only");
  refresh();
  $("analysis-form").dataset.ready = "true";
}

start().catch(showError);
