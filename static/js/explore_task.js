// Explorer task views, drawn from a /predict result and a timestep t. The tracking tasks
// show trajectories. N-th farthest shows the presented vectors, their PCA projection, the
// predicted probabilities and the attention of each slot to each presented vector.

import {
  describeRanking,
  drawInputAttention,
  drawProjection,
  ordinal,
} from "./explore_nth.js";
import { element, formatNumber, formatPercent } from "./format.js";
import { COLORS, PLOT_CONFIG, baseLayout } from "./plots.js";

/**
 * Observations decoded from the model inputs: one per step before the query, with the
 * observed object's id and its (x, y) as the model saw them (noise included). Each input
 * row starts with the object's one-hot id followed by x and y.
 */
function decodeObservations(result, numObjects) {
  const observations = [];
  const queryStep = result.inputs.length - 1;
  for (let step = 0; step < queryStep; step += 1) {
    const row = result.inputs[step];
    const object = result.info.observed_object?.[step] ?? argmax(row.slice(0, numObjects));
    observations.push({ step, object, x: row[numObjects], y: row[numObjects + 1] });
  }
  return observations;
}

function argmax(values) {
  let best = 0;
  values.forEach((value, index) => {
    if (value > values[best]) best = index;
  });
  return best;
}

/** Draw every object's true trajectory, the observations in order, and the true and predicted target. */
export function drawTrajectories(div, result, t, uirevision) {
  const positions = result.info.positions; // [T][num_objects][2]
  const numObjects = positions[0].length;
  const queryStep = positions.length - 1;
  const query = result.info.query_object;
  const traces = [];

  for (let object = 0; object < numObjects; object += 1) {
    traces.push({
      x: positions.map((step) => step[object][0]),
      y: positions.map((step) => step[object][1]),
      name: `object ${object}`,
      mode: "lines+markers",
      line: { color: COLORS[object % COLORS.length], width: 1.5 },
      marker: { size: 4 },
      opacity: 0.55,
      hovertemplate: `object ${object}<br>step %{pointNumber}<br>(%{x:.2f}, %{y:.2f})<extra></extra>`,
    });
  }

  const observations = decodeObservations(result, numObjects);
  traces.push({
    x: observations.map((obs) => obs.x),
    y: observations.map((obs) => obs.y),
    text: observations.map((obs) => String(obs.step)),
    customdata: observations.map((obs) => obs.object),
    name: "observation (step)",
    mode: "markers+text",
    textposition: "top center",
    textfont: { size: 11 },
    marker: {
      size: 9,
      symbol: "circle-open",
      line: { width: 2 },
      color: observations.map((obs) => COLORS[obs.object % COLORS.length]),
    },
    hovertemplate: "step %{text}: object %{customdata} seen at (%{x:.2f}, %{y:.2f})<extra></extra>",
  });

  const current = positions[Math.min(t, queryStep)];
  traces.push({
    x: current.map((xy) => xy[0]),
    y: current.map((xy) => xy[1]),
    name: `positions at t = ${t}`,
    mode: "markers",
    marker: { size: 14, symbol: "square-open", color: "#1f2328", line: { width: 2 } },
    hoverinfo: "skip",
  });
  const seen = observations.find((obs) => obs.step === t);
  if (seen) {
    traces.push({
      x: [seen.x],
      y: [seen.y],
      name: `observed at t = ${t}`,
      mode: "markers",
      marker: { size: 18, symbol: "circle-open", color: "#cf222e", line: { width: 3 } },
      hoverinfo: "skip",
    });
  }

  const [targetX, targetY] = result.target;
  const [predictedX, predictedY] = result.prediction;
  traces.push(
    {
      x: [targetX, predictedX],
      y: [targetY, predictedY],
      name: "prediction error",
      mode: "lines",
      line: { color: "#6e7781", dash: "dot", width: 1.5 },
      hoverinfo: "skip",
      showlegend: false,
    },
    {
      x: [targetX],
      y: [targetY],
      name: `target (object ${query})`,
      mode: "markers",
      marker: {
        size: 16,
        symbol: "star",
        color: COLORS[query % COLORS.length],
        line: { color: "#1f2328", width: 1 },
      },
    },
    {
      x: [predictedX],
      y: [predictedY],
      name: "prediction",
      mode: "markers",
      marker: { size: 14, symbol: "x", color: "#1f2328" },
    },
  );

  const layout = baseLayout({
    title: `Trajectories; query: object ${query} at step ${queryStep}`,
    xTitle: "x",
    yTitle: "y",
    uirevision,
  });
  layout.xaxis.range = [-0.05, 1.05];
  layout.yaxis.range = [-0.05, 1.05];
  layout.yaxis.scaleanchor = "x";
  layout.xaxis.constrain = "domain";
  layout.yaxis.constrain = "domain";
  layout.legend = { orientation: "h", yanchor: "top", y: -0.14, font: { size: 11 } };
  layout.margin = { l: 48, r: 16, t: 56, b: 90 };
  window.Plotly.react(div, traces, layout, PLOT_CONFIG);
}

/** Describe timestep t of a tracking sequence in words. */
export function describeTrackingStep(result, t) {
  const last = result.inputs.length - 1;
  const object = result.info.observed_object?.[t];
  if (t === last) return `Query step: where is object ${result.info.query_object} now?`;
  return object === undefined ? `Observation step ${t}` : `Observation of object ${object}`;
}

function distance(a, b) {
  return Math.sqrt(a.reduce((sum, value, index) => sum + (value - b[index]) ** 2, 0));
}

function barColor(label, answer, predicted) {
  if (label === answer) return COLORS[2];
  if (label === predicted) return COLORS[1];
  return COLORS[0];
}

/** Fill the N-th farthest view: the question, the vectors in presentation order, and the bar chart. */
export function drawNthFarthest(view, result, t, uirevision) {
  const { vectors, order, n, m, ranking } = result.info;
  const answer = result.target;
  const probabilities = result.probabilities ?? [];
  const predicted = probabilities.length ? argmax(probabilities) : argmax(result.prediction);
  const rank = new Map(ranking.map((label, index) => [label, index]));

  view.querySelector("#nth-question").textContent =
    `Which vector is the ${ordinal(n + 1)} farthest from vector ${m}? (n = ${n}, m = ${m}) ` +
    `Correct label: ${answer}. Predicted: ${predicted}` +
    (probabilities.length ? ` with probability ${formatPercent(probabilities[predicted])}.` : ".");

  const rows = order.map((label, step) => {
    const classes = [
      step === t ? "current" : "",
      label === m ? "reference" : "",
      label === answer ? "answer" : "",
    ];
    return element(
      "tr",
      { className: classes.filter(Boolean).join(" "), dataset: { step: String(step) } },
      element("td", {}, String(step)),
      element(
        "td",
        {},
        `${label}${label === m ? " (m)" : ""}${label === answer ? " (correct)" : ""}`,
      ),
      element(
        "td",
        { className: "vector" },
        `[${vectors[label].map((value) => value.toFixed(2)).join(", ")}]`,
      ),
      element("td", { className: "number" }, formatNumber(distance(vectors[label], vectors[m]), 3)),
      element("td", { className: "number" }, ordinal(rank.get(label) + 1)),
    );
  });
  view.querySelector("#vector-table tbody").replaceChildren(...rows);
  view.querySelector("#nth-ranking").textContent = describeRanking(result, predicted);

  const labels = probabilities.map((_, label) => `label ${label}`);
  const colors = probabilities.map((_, label) => barColor(label, answer, predicted));
  const layout = baseLayout({
    title: "Predicted probabilities (green: correct label, orange: predicted)",
    xTitle: "label",
    yTitle: "probability",
    uirevision,
  });
  layout.yaxis.range = [0, 1];
  layout.showlegend = false;
  window.Plotly.react(
    view.querySelector("#probability-chart"),
    [
      {
        type: "bar",
        x: labels,
        y: probabilities,
        marker: { color: colors },
        hovertemplate: "%{x}: %{y:.3f}<extra></extra>",
      },
    ],
    layout,
    PLOT_CONFIG,
  );
}

/**
 * Redraw the parts of the N-th farthest view that follow the timestep, head and block: the
 * table's current row, the projection and, for an RMC, the attention to each vector.
 */
export function updateNthTimestep(view, result, { t, block, head, uirevision }) {
  for (const row of view.querySelectorAll("#vector-table tbody tr")) {
    row.classList.toggle("current", row.dataset.step === String(t));
  }
  const probabilities = result.probabilities ?? [];
  const predicted = probabilities.length ? argmax(probabilities) : argmax(result.prediction);
  drawProjection(view.querySelector("#nth-projection-chart"), result, t, predicted, uirevision);
  const attentionChart = view.querySelector("#nth-input-attention-chart");
  attentionChart.hidden = !result.trace?.attention;
  if (result.trace?.attention) {
    drawInputAttention(attentionChart, result, { t, block, head, uirevision });
  }
}

/** Describe timestep t of an N-th farthest sequence in words. */
export function describeNthStep(result, t) {
  const label = result.info.order[t];
  return `Step ${t} presents vector ${label}${label === result.info.m ? " (the reference m)" : ""}.`;
}
