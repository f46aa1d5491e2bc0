// Plotly defaults shared by every chart. Plotly is the global from /vendor/plotly.min.js.

/**
 * Chart options: responsive, and the mode bar always shown so "Download plot as a PNG" is at
 * hand. The cloud-sharing button is off because the tool runs offline.
 */
export const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  displayModeBar: true,
  showSendToCloud: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d"],
  toImageButtonOptions: { format: "png", scale: 2 },
};

/** Return PLOT_CONFIG with `filename` (no extension) as the name of the PNG download. */
export function plotConfig(filename) {
  return { ...PLOT_CONFIG, toImageButtonOptions: { ...PLOT_CONFIG.toImageButtonOptions, filename } };
}

/** Eight colours that stay distinct for readers with common colour-vision deficiencies. */
export const COLORS = [
  "#0072b2",
  "#d55e00",
  "#009e73",
  "#cc79a7",
  "#e69f00",
  "#56b4e9",
  "#000000",
  "#f0e442",
];

/** Build a layout with a title, axis titles and a top margin that fits the mode bar. */
export function baseLayout({ title, xTitle, yTitle, uirevision }) {
  return {
    title: { text: title, font: { size: 14 }, x: 0, xanchor: "left", xref: "paper" },
    xaxis: { title: { text: xTitle }, zeroline: false },
    yaxis: { title: { text: yTitle }, zeroline: false },
    margin: { l: 60, r: 20, t: 56, b: 48 },
    legend: { orientation: "h", yanchor: "top", y: -0.25 },
    uirevision,
    paper_bgcolor: "#ffffff",
    modebar: { bgcolor: "rgba(255,255,255,0.85)", color: "#57606a", activecolor: "#0550ae" },
    plot_bgcolor: "#ffffff",
    font: { family: "system-ui, sans-serif", color: "#1f2328" },
  };
}

/** Switch the y axis of every chart in `divs` between linear and log scale. */
export function setLogScale(divs, logScale) {
  for (const div of divs) {
    if (!div || !div.data) continue;
    window.Plotly.relayout(div, {
      "yaxis.type": logScale ? "log" : "linear",
      "yaxis.autorange": true,
    });
  }
}

/** Build a horizontal dashed line across the plot at `y`, labelled at its right end. */
export function horizontalLine(y, label, color = "#6e7781") {
  return {
    shape: {
      type: "line",
      xref: "paper",
      x0: 0,
      x1: 1,
      yref: "y",
      y0: y,
      y1: y,
      line: { color, width: 1.5, dash: "dash" },
    },
    annotation: {
      xref: "paper",
      x: 1,
      xanchor: "right",
      yref: "y",
      y,
      yanchor: "bottom",
      text: label,
      showarrow: false,
      font: { size: 11, color },
    },
  };
}

/** Build a vertical line at `x` across the plot, the marker of the current timestep. */
export function verticalLine(x, color = "#cf222e") {
  return {
    type: "line",
    xref: "x",
    x0: x,
    x1: x,
    yref: "paper",
    y0: 0,
    y1: 1,
    line: { color, width: 2 },
  };
}
