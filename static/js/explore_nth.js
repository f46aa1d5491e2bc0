// Explorer views of one N-th farthest sequence that change with the timestep: the vectors
// as points in a 2-D PCA projection, and the attention of each memory slot to the vector
// presented at each step. Inputs follow POST /api/runs/{id}/predict: info.vectors [K][V]
// in label order, info.order [K] (label presented at each step), info.n, info.m,
// info.ranking [K] (labels from farthest to nearest from m); RMC trace.attention
// [T][L][H][N+1][N+1] with T = K, rows = query slots, the last column = the input row.

import { formatPercent } from "./format.js";
import { COLORS, PLOT_CONFIG, baseLayout } from "./plots.js";

const POWER_ITERATIONS = 200;

function matrixVector(matrix, vector) {
  return matrix.map((row) => row.reduce((sum, value, index) => sum + value * vector[index], 0));
}

function norm(vector) {
  return Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));
}

/**
 * Top eigenvector and eigenvalue of a symmetric positive semi-definite matrix by power
 * iteration from a fixed start, so the same matrix always gives the same picture. The sign
 * is chosen so that the entry of largest magnitude is positive.
 */
function topEigen(matrix) {
  const size = matrix.length;
  let vector = Array.from({ length: size }, (_, index) => 1 + index / size);
  let value = 0;
  for (let iteration = 0; iteration < POWER_ITERATIONS; iteration += 1) {
    const next = matrixVector(matrix, vector);
    value = norm(next);
    if (value < 1e-12) return { vector: vector.map(() => 0), value: 0 };
    vector = next.map((entry) => entry / value);
  }
  const largest = vector.reduce((best, entry) => (Math.abs(entry) > Math.abs(best) ? entry : best));
  return { vector: largest < 0 ? vector.map((entry) => -entry) : vector, value };
}

/**
 * Project K points of dimension V onto their first two principal components.
 *
 * Works on the centred Gram matrix G = Xc Xc^T (K x K, at most 16 x 16 here): its top
 * eigenvectors u with eigenvalues s^2 give the coordinates s u directly. Returns
 * {points [K][2], explained [2]} with the fraction of the total variance on each axis.
 */
export function projectPca(vectors) {
  const count = vectors.length;
  const dim = vectors[0].length;
  const mean = Array.from({ length: dim }, (_, d) => vectors.reduce((s, v) => s + v[d], 0) / count);
  const centred = vectors.map((vector) => vector.map((value, d) => value - mean[d]));
  const gram = centred.map((a) => centred.map((b) => a.reduce((s, v, d) => s + v * b[d], 0)));
  const total = gram.reduce((sum, row, index) => sum + row[index], 0);

  const first = topEigen(gram);
  // Deflate: remove the first component before finding the second.
  const deflated = gram.map((row, i) =>
    row.map((value, j) => value - first.value * first.vector[i] * first.vector[j]),
  );
  const second = topEigen(deflated);
  const scale = (component) => Math.sqrt(Math.max(component.value, 0));
  const points = centred.map((_, index) => [
    scale(first) * first.vector[index],
    scale(second) * second.vector[index],
  ]);
  const explained = total > 0 ? [first.value / total, second.value / total] : [0, 0];
  return { points, explained };
}

/** Format 1, 2, 3, 11 as "1st", "2nd", "3rd", "11th". */
export function ordinal(k) {
  const teen = k % 100 >= 11 && k % 100 <= 13;
  const suffixes = { 1: "st", 2: "nd", 3: "rd" };
  const suffix = teen ? "th" : (suffixes[k % 10] ?? "th");
  return `${k}${suffix}`;
}

/** Fill the ranking line: labels from farthest to nearest from m, the answer marked. */
export function describeRanking(result, predicted) {
  const { ranking, n, m } = result.info;
  const entries = ranking.map((label, rank) => {
    const marks = [];
    if (rank === n) marks.push("answer");
    if (label === predicted) marks.push("predicted");
    if (label === m) marks.push("m");
    return `${ordinal(rank + 1)}: ${label}${marks.length ? ` (${marks.join(", ")})` : ""}`;
  });
  return `True ranking by distance from vector ${m}, farthest first: ${entries.join(" · ")}`;
}

/**
 * Draw the vectors as points of their 2-D PCA projection at timestep t: vectors presented so
 * far are solid, later ones faint; the vector presented at t is ringed, m is a star, the
 * correct answer is green and the model's answer orange.
 */
export function drawProjection(div, result, t, predicted, uirevision) {
  const { vectors, order, m, ranking } = result.info;
  const answer = result.target;
  const { points, explained } = projectPca(vectors);
  const rank = new Map(ranking.map((label, index) => [label, index]));
  const presentedAt = new Map(order.map((label, step) => [label, step]));
  const labels = vectors.map((_, label) => label);

  const colorOf = (label) => {
    if (label === answer) return COLORS[2];
    if (label === predicted) return COLORS[1];
    return COLORS[0];
  };
  const traces = [
    {
      x: labels.map((label) => points[label][0]),
      y: labels.map((label) => points[label][1]),
      text: labels.map((label) => `${label}`),
      customdata: labels.map((label) => [ordinal(rank.get(label) + 1), presentedAt.get(label)]),
      name: "vectors (label)",
      mode: "markers+text",
      textposition: "top center",
      marker: {
        size: labels.map((label) => (label === m ? 20 : 13)),
        symbol: labels.map((label) => (label === m ? "star" : "circle")),
        color: labels.map(colorOf),
        opacity: labels.map((label) => (presentedAt.get(label) <= t ? 1 : 0.3)),
        line: { color: "#1f2328", width: 1 },
      },
      hovertemplate:
        "vector %{text}: %{customdata[0]} farthest from m, presented at step %{customdata[1]}<extra></extra>",
    },
    {
      x: [points[m][0], points[answer][0]],
      y: [points[m][1], points[answer][1]],
      name: `m = ${m} to the correct answer ${answer}`,
      mode: "lines",
      line: { color: COLORS[2], dash: "dot", width: 1.5 },
      hoverinfo: "skip",
    },
  ];
  const current = order[t];
  traces.push({
    x: [points[current][0]],
    y: [points[current][1]],
    name: `presented at t = ${t}: vector ${current}`,
    mode: "markers",
    marker: { size: 28, symbol: "circle-open", color: "#cf222e", line: { width: 2.5 } },
    hoverinfo: "skip",
  });

  const layout = baseLayout({
    title: `Vectors in 2-D PCA (${formatPercent(explained[0] + explained[1])} of variance)`,
    xTitle: `PC 1 (${formatPercent(explained[0])})`,
    yTitle: `PC 2 (${formatPercent(explained[1])})`,
    uirevision,
  });
  layout.yaxis.scaleanchor = "x";
  layout.legend = { orientation: "h", yanchor: "top", y: -0.16, font: { size: 11 } };
  layout.margin = { l: 56, r: 16, t: 56, b: 96 };
  window.Plotly.react(div, traces, layout, PLOT_CONFIG);
  div.dataset.timestep = String(t);
}

/**
 * Return the attention of each memory slot to the vector presented at each step, [N][T].
 * Entry [i][t] is the weight that slot i's query puts on the input row at step t (the last
 * key of the attention matrix), and that input row is vector order[t]. The block and head
 * are the page's selection. A slot sees a vector directly only at the step that presents
 * it, so what it keeps afterwards lives in its memory.
 */
export function inputAttention(attention, block, head) {
  const numSlots = attention[0][block][head].length - 1;
  const inputColumn = numSlots;
  return Array.from({ length: numSlots }, (_, slot) =>
    attention.map((step) => step[block][head][slot][inputColumn]),
  );
}

/** Draw inputAttention as a heatmap, with the column of timestep t outlined. */
export function drawInputAttention(div, result, { t, block, head, uirevision }) {
  const { order, m } = result.info;
  const answer = result.target;
  const z = inputAttention(result.trace.attention, block, head); // [N][T]
  const columns = order.map((label, step) => {
    const marks = [label === m ? "m" : "", label === answer ? "answer" : ""].filter(Boolean);
    return `t${step}: v${label}${marks.length ? ` (${marks.join(", ")})` : ""}`;
  });
  const rows = z.map((_, slot) => `slot ${slot}`);
  const trace = {
    type: "heatmap",
    z,
    x: columns,
    y: rows,
    zmin: 0,
    zmax: 1,
    colorscale: "Viridis",
    colorbar: { title: { text: "weight" }, thickness: 12 },
    texttemplate: "%{z:.2f}",
    textfont: { size: 11 },
    hovertemplate: "%{y} → input at %{x}: %{z:.3f}<extra></extra>",
  };
  const layout = baseLayout({
    title: `Slot attention to each presented vector (block ${block}, head ${head})`,
    xTitle: "step: vector presented",
    yTitle: "memory slot (query)",
    uirevision,
  });
  layout.yaxis.autorange = "reversed";
  layout.shapes = [
    {
      type: "rect",
      xref: "x",
      yref: "paper",
      x0: t - 0.5,
      x1: t + 0.5,
      y0: 0,
      y1: 1,
      line: { color: "#cf222e", width: 2.5 },
    },
  ];
  layout.margin = { l: 64, r: 16, t: 56, b: 64 };
  window.Plotly.react(div, [trace], layout, PLOT_CONFIG);
  div.dataset.timestep = String(t);
  div.dataset.head = String(head);
  div.dataset.block = String(block);
}
