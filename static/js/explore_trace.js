// Explorer trace views: the RMC attention heatmap and per-slot gate and memory-norm curves,
// or the LSTM gate and state heatmaps. Trace shapes follow POST /api/runs/{id}/predict:
// RMC attention [T][L][H][N+1][N+1]; input_gate, forget_gate, memory_norm [T][N];
// LSTM input_gate, forget_gate, output_gate, cell, hidden [T][hidden_size].

import { COLORS, PLOT_CONFIG, baseLayout, verticalLine } from "./plots.js";

/** Slot labels for the N+1 rows and columns of an attention matrix: slot 0..N-1, then input. */
export function slotLabels(size) {
  return Array.from({ length: size }, (_, index) =>
    index === size - 1 ? "input" : `slot ${index}`,
  );
}

/** Draw the attention weights of timestep t, block and head: rows are queries, columns keys. */
export function drawAttention(div, attention, { t, block, head, uirevision }) {
  const matrix = attention[t][block][head]; // [N+1][N+1], row = query slot, column = key slot
  const labels = slotLabels(matrix.length);
  const trace = {
    type: "heatmap",
    z: matrix,
    x: labels,
    y: labels,
    zmin: 0,
    zmax: 1,
    colorscale: "Viridis",
    colorbar: { title: { text: "weight" }, thickness: 12 },
    hovertemplate: "query %{y} → key %{x}: %{z:.3f}<extra></extra>",
  };
  // Print the weights in the cells while they stay readable.
  if (matrix.length <= 12) {
    trace.texttemplate = "%{z:.2f}";
    trace.textfont = { size: 11 };
  }

  const layout = baseLayout({
    title: `Attention at t = ${t}, block ${block}, head ${head}`,
    xTitle: "key (attended to)",
    yTitle: "query (attending)",
    uirevision,
  });
  layout.yaxis.autorange = "reversed";
  layout.xaxis.side = "bottom";
  layout.margin = { l: 72, r: 16, t: 56, b: 56 };
  window.Plotly.react(div, [trace], layout, PLOT_CONFIG);

  // Tests and scripts read the shown view from these attributes.
  div.dataset.timestep = String(t);
  div.dataset.head = String(head);
  div.dataset.block = String(block);
}

/** Draw one line per slot of a [T][N] quantity, with a marker at timestep t. */
export function drawSlotCurves(div, values, { title, yTitle, t, uirevision, range }) {
  const steps = values.map((_, step) => step);
  const numSlots = values[0].length;
  const traces = Array.from({ length: numSlots }, (_, slot) => ({
    x: steps,
    y: values.map((row) => row[slot]),
    name: `slot ${slot}`,
    mode: "lines+markers",
    marker: { size: 4 },
    line: { color: COLORS[slot % COLORS.length], width: 1.5 },
  }));
  const layout = baseLayout({ title, xTitle: "timestep", yTitle, uirevision });
  layout.shapes = [verticalLine(t)];
  if (range) layout.yaxis.range = range;
  layout.margin = { l: 52, r: 12, t: 56, b: 90 };
  layout.legend = { orientation: "h", yanchor: "top", y: -0.3 };
  window.Plotly.react(div, traces, layout, PLOT_CONFIG);
}

/** Draw a [T][units] trace as a heatmap with time on x and units on y, marked at t. */
export function drawUnitHeatmap(div, values, { title, t, uirevision, zmin, zmax, colorscale }) {
  const numUnits = values[0].length;
  // [T][units] -> [units][T], so each row of the heatmap is one unit over time.
  const z = Array.from({ length: numUnits }, (_, unit) => values.map((row) => row[unit]));
  const trace = {
    type: "heatmap",
    z,
    x: values.map((_, step) => step),
    y: z.map((_, unit) => unit),
    zmin,
    zmax,
    colorscale,
    colorbar: { thickness: 12 },
    hovertemplate: "t = %{x}, unit %{y}: %{z:.3f}<extra></extra>",
  };
  const layout = baseLayout({ title, xTitle: "timestep", yTitle: "unit", uirevision });
  layout.shapes = [verticalLine(t, "#ffffff")];
  window.Plotly.react(div, [trace], layout, PLOT_CONFIG);
  div.dataset.timestep = String(t);
}

/** Move the current-timestep marker of a chart drawn above, without redrawing its data. */
export function moveMarker(div, t) {
  if (!div.data || !div.layout?.shapes?.length) return;
  const color = div.layout.shapes[0].line?.color;
  window.Plotly.relayout(div, { shapes: [verticalLine(t, color)] });
  div.dataset.timestep = String(t);
}
