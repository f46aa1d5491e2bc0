// Run page extras for classification runs: held-out accuracy per question type (the
// `test_accuracy_per_n` metric of N-th farthest) and the progress of a curriculum
// (`curriculum_stage` and `stage_test_accuracy` in the metric rows).

import { formatPercent } from "./format.js";
import { COLORS, PLOT_CONFIG, baseLayout } from "./plots.js";

export const PER_N_KEY = "test_accuracy_per_n";

/** Return whether any metric row carries accuracy per n. */
export function hasPerN(metrics) {
  return metrics.some((row) => row[PER_N_KEY]);
}

/** Return whether the run trains through a curriculum. */
export function hasCurriculum(run) {
  return Array.isArray(run?.config?.curriculum) && run.config.curriculum.length > 0;
}

/**
 * Stage changes seen in the metric rows: [{stage, step, byThreshold}]. `stage` is the stage
 * that starts (the number of stages means the run's own task) and `step` the last metric
 * step of the stage before. When that stage passed its threshold at that step the change
 * happened exactly there (`byThreshold`); otherwise it happened after it, by max_steps.
 */
export function stageChanges(metrics, run) {
  const stages = run?.config?.curriculum ?? [];
  const changes = [];
  let previous = null;
  for (const row of metrics) {
    if (row.curriculum_stage == null) continue;
    if (previous && row.curriculum_stage !== previous.curriculum_stage) {
      const threshold = stages[previous.curriculum_stage]?.threshold;
      changes.push({
        stage: row.curriculum_stage,
        step: previous.step,
        byThreshold:
          previous.stage_test_accuracy != null &&
          threshold != null &&
          previous.stage_test_accuracy >= threshold,
      });
    }
    previous = row;
  }
  return changes;
}

function describeStage(run, stage) {
  const stages = run.config.curriculum;
  if (stage >= stages.length) return "the run's own task";
  const options = Object.entries(stages[stage].task_options ?? {})
    .map(([name, value]) => `${name} ${Array.isArray(value) ? `[${value.join(", ")}]` : value}`)
    .join(", ");
  return `stage ${stage + 1} of ${stages.length} (${options || "the run's task options"})`;
}

/** Describe the current stage of a curriculum run and the stages it has ended. */
export function curriculumText(metrics, run) {
  const rows = metrics.filter((row) => row.curriculum_stage != null);
  if (!rows.length) return `Curriculum of ${run.config.curriculum.length} stages; no metrics yet.`;
  const last = rows.at(-1);
  const parts = [`Curriculum: training on ${describeStage(run, last.curriculum_stage)}.`];
  const latestStage = [...rows].reverse().find((row) => row.stage_test_accuracy != null);
  if (latestStage && latestStage.curriculum_stage === last.curriculum_stage) {
    parts.push(`Its held-out accuracy: ${formatPercent(latestStage.stage_test_accuracy)}.`);
  }
  // A change to stage index k (0-based) ends stage k in the 1-based numbering shown.
  const ended = stageChanges(metrics, run).map(
    ({ stage, step, byThreshold }) =>
      `stage ${stage} ${byThreshold ? "at" : "after"} step ${step.toLocaleString("en-US")}`,
  );
  if (ended.length) parts.push(`Ended: ${ended.join("; ")}.`);
  return parts.join(" ");
}

/** Return the config with each curriculum stage as one readable entry, for the config table. */
export function readableConfig(config) {
  if (!Array.isArray(config?.curriculum)) return config;
  const stages = Object.fromEntries(
    config.curriculum.map((stage, index) => [
      String(index + 1),
      `${JSON.stringify(stage.task_options ?? {})}, threshold ${stage.threshold}` +
        (stage.max_steps != null ? `, max_steps ${stage.max_steps}` : ""),
    ]),
  );
  return { ...config, curriculum: stages };
}

/** Draw held-out accuracy per n against step, one line per n, with the stage changes. */
export function drawPerN(div, metrics, run) {
  const rows = metrics.filter((row) => row[PER_N_KEY]);
  const values = [...new Set(rows.flatMap((row) => Object.keys(row[PER_N_KEY])))].sort(
    (a, b) => Number(a) - Number(b),
  );
  const traces = values.map((n, index) => {
    const kept = rows.filter((row) => row[PER_N_KEY][n] != null);
    return {
      x: kept.map((row) => row.step),
      y: kept.map((row) => row[PER_N_KEY][n]),
      name: `n = ${n}`,
      mode: "lines+markers",
      marker: { size: 4 },
      line: { color: COLORS[index % COLORS.length], width: 1.5 },
      hovertemplate: `n = ${n}, step %{x}: %{y:.3f}<extra></extra>`,
    };
  });
  const layout = baseLayout({
    title: "Test accuracy per n (n = 0 asks for the farthest vector)",
    xTitle: "step",
    yTitle: "test accuracy",
    uirevision: run?.id,
  });
  layout.yaxis.range = [0, 1.02];
  const changes = hasCurriculum(run) ? stageChanges(metrics, run) : [];
  layout.shapes = changes.map(({ step }) => ({
    type: "line",
    xref: "x",
    x0: step,
    x1: step,
    yref: "paper",
    y0: 0,
    y1: 1,
    line: { color: "#6e7781", width: 1, dash: "dot" },
  }));
  layout.annotations = changes.map(({ stage, step }) => ({
    xref: "x",
    x: step,
    yref: "paper",
    y: 1,
    yanchor: "bottom",
    text: stage >= run.config.curriculum.length ? "own task" : `stage ${stage + 1}`,
    showarrow: false,
    font: { size: 10, color: "#57606a" },
  }));
  window.Plotly.react(div, traces, layout, PLOT_CONFIG);
}
