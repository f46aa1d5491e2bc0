// Explorer: generate a sequence for a trained run, then scrub through its trace. The view
// state (run, seed, t, head, block) lives in the URL, so a copied link reopens the same view.

import { apiFetch, clearMessage, showError, showMessage } from "./api.js";
import { element, formatNumber } from "./format.js";
import {
  describeNthStep,
  describeTrackingStep,
  drawNthFarthest,
  drawTrajectories,
  updateNthTimestep,
} from "./explore_task.js";
import { drawAttention, drawSlotCurves, drawUnitHeatmap, moveMarker } from "./explore_trace.js";
import { addTableExport } from "./table_export.js";

const PLAY_INTERVAL_MS = 700;

const $ = (id) => document.getElementById(id);
const runSelect = $("explore-run");
const seedInput = $("explore-seed");
const slider = $("timestep");
const headSelect = $("head-select");
const blockSelect = $("block-select");
const playButton = $("play-button");

const state = { run: "", seed: 0, t: 0, head: 0, block: 0 };
let result = null;
let playTimer = null;
// Notes on the URL's values that the view cannot show as given, shown with the first result.
let urlNotes = [];
let fromUrl = false; // true until the first result of a view opened from its URL

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  // Number() reads "1e3" as 1000, as the seed box does. Anything but a whole number >= 0 is 0.
  const integer = (name) => {
    const text = params.get(name);
    const value = Number(text ?? "");
    if (Number.isSafeInteger(value) && value >= 0) return value;
    if (text !== null) urlNotes.push(`${name}=${text} is not a whole number from 0, so ${name}=0 is shown`);
    return 0;
  };
  return {
    run: params.get("run") ?? "",
    seed: integer("seed"),
    t: integer("t"),
    head: integer("head"),
    block: integer("block"),
  };
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.run) params.set("run", state.run);
  if (result) {
    params.set("seed", String(state.seed));
    params.set("t", String(state.t));
    if (result.model === "rmc") {
      params.set("head", String(state.head));
      params.set("block", String(state.block));
    }
  }
  window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
}

async function loadRuns() {
  const runs = (await apiFetch("/api/runs")).filter((run) => run.has_checkpoint);
  runSelect.replaceChildren(
    element(
      "option",
      { value: "" },
      runs.length ? "Choose a run…" : "No runs with a checkpoint yet",
    ),
    ...runs.map((run) =>
      element("option", { value: run.id }, `${run.name} (${run.model}, ${run.task})`),
    ),
  );
  if (state.run && !runs.some((run) => run.id === state.run)) {
    showError(await describeUnexplorable(state.run));
    state.run = "";
  }
  runSelect.value = state.run;
}

/** Return the message that explains why the run `runId` from the URL cannot be explored. */
async function describeUnexplorable(runId) {
  let run;
  try {
    run = await apiFetch(`/api/runs/${encodeURIComponent(runId)}`);
  } catch (error) {
    if (error.status === 404 || error.status === 422) return `No run has the id ${runId}.`;
    throw error;
  }
  // A checkpoint is saved once, when training ends, so only queued and running runs get one later.
  if (run.status === "queued" || run.status === "running") {
    return `Run ${runId} is ${run.status} and has no checkpoint yet. It saves one when training ends.`;
  }
  return `Run ${runId} ended as ${run.status} without a checkpoint, so there is nothing to explore.`;
}

async function generate() {
  if (!state.run) {
    showError("Choose a trained run first.");
    return;
  }
  stopPlaying();
  const button = $("generate-button");
  button.disabled = true;
  $("sequence-summary").textContent = "Running the model…";
  try {
    result = await apiFetch(`/api/runs/${state.run}/predict`, {
      method: "POST",
      body: { seed: state.seed },
    });
    clearMessage();
    setupControls();
    if (fromUrl && urlNotes.length) showMessage(`In the link, ${urlNotes.join("; ")}.`, "info");
    render();
  } catch (error) {
    $("sequence-summary").textContent = "";
    showError(error);
  } finally {
    button.disabled = false;
    fromUrl = false;
    urlNotes = [];
  }
}

function sequenceLength() {
  return result.inputs.length;
}

function options(count, label) {
  return Array.from({ length: count }, (_, index) =>
    element("option", { value: String(index) }, `${label} ${index}`),
  );
}

/** Size the slider and selectors to the new result, keeping t, head and block where they fit. */
function setupControls() {
  const last = sequenceLength() - 1;
  // Clamp state[name] below count, noting a value from the URL that was out of range.
  const fit = (name, count) => {
    if (state[name] < count) return;
    urlNotes.push(`${name}=${state[name]} is out of range (${count} in all), so ${name}=${count - 1} is shown`);
    state[name] = count - 1;
  };
  fit("t", last + 1);
  slider.max = String(last);
  slider.value = String(state.t);

  const isRmc = result.model === "rmc" && result.trace?.attention;
  $("head-field").hidden = !isRmc;
  $("block-field").hidden = !isRmc || result.trace.attention[0].length < 2;
  if (isRmc) {
    const numBlocks = result.trace.attention[0].length;
    const numHeads = result.trace.attention[0][0].length;
    fit("block", numBlocks);
    fit("head", numHeads);
    blockSelect.replaceChildren(...options(numBlocks, "block"));
    headSelect.replaceChildren(...options(numHeads, "head"));
    blockSelect.value = String(state.block);
    headSelect.value = String(state.head);
  }
  $("explore-results").hidden = false;
}

function summaryText() {
  const loss = result.loss != null ? `Loss on this sequence: ${formatNumber(result.loss)}.` : "";
  if (Array.isArray(result.target)) {
    const pair = (values) => `(${values.map((value) => value.toFixed(3)).join(", ")})`;
    return `${loss} Target ${pair(result.target)}, prediction ${pair(result.prediction)}.`;
  }
  return loss;
}

/** Draw the views of a new result; updateTimestep then draws the parts that depend on t. */
function render() {
  const uirevision = `${result.run_id}-${state.seed}`;
  $("sequence-summary").textContent = summaryText();
  const info = result.info ?? {};
  $("trajectory-chart").hidden = !info.positions;
  $("nth-view").hidden = !info.vectors;
  if (info.vectors) drawNthFarthest($("nth-view"), result, state.t, uirevision);

  const isRmc = Boolean(result.trace?.attention);
  $("attention-chart").hidden = !isRmc;
  $("lstm-view").hidden = isRmc;
  $("gates-panel").hidden = !isRmc;
  $("memory-heading").textContent = isRmc ? "Attention over memory" : "LSTM gates and state";
  if (isRmc) drawRmcTrace(uirevision);
  else drawLstmTrace(uirevision);
  updateTimestep();
}

function drawRmcTrace(uirevision) {
  const trace = result.trace;
  const hasGates = Boolean(trace.input_gate && trace.forget_gate);
  $("input-gate-chart").hidden = !hasGates;
  $("forget-gate-chart").hidden = !hasGates;
  $("gates-note").hidden = hasGates;
  $("gates-note").textContent = hasGates
    ? ""
    : "This RMC has no gates (gate_style none): memory is replaced at every step.";
  const curves = [["memory-norm-chart", trace.memory_norm, "Memory norm", "L2 norm", undefined]];
  if (hasGates) {
    curves.push(
      ["input-gate-chart", trace.input_gate, "Input gate", "mean over units", [0, 1]],
      ["forget-gate-chart", trace.forget_gate, "Forget gate", "mean over units", [0, 1]],
    );
  }
  for (const [id, values, title, yTitle, range] of curves) {
    drawSlotCurves($(id), values, { title, yTitle, t: state.t, uirevision, range });
  }
}

function drawLstmTrace(uirevision) {
  const trace = result.trace;
  const gate = $("lstm-gate-select").value;
  const stateName = $("lstm-state-select").value;
  drawUnitHeatmap($("lstm-gate-chart"), trace[gate], {
    title: `${gate.replace("_", " ")} activation`,
    t: state.t,
    uirevision,
    zmin: 0,
    zmax: 1,
    colorscale: "Viridis",
  });
  const extent = Math.max(1e-6, ...trace[stateName].flat().map(Math.abs));
  drawUnitHeatmap($("lstm-state-chart"), trace[stateName], {
    title: `${stateName} state`,
    t: state.t,
    uirevision,
    zmin: -extent,
    zmax: extent,
    colorscale: "RdBu",
  });
}

/** Show timestep state.t everywhere: slider, labels, heatmap, markers and the URL. */
function updateTimestep() {
  const t = state.t;
  slider.value = String(t);
  $("timestep-value").textContent = `${t} of ${sequenceLength() - 1}`;
  const info = result.info ?? {};
  $("timestep-label").textContent = info.positions
    ? describeTrackingStep(result, t)
    : info.vectors
      ? describeNthStep(result, t)
      : "";
  const uirevision = `${result.run_id}-${state.seed}`;
  if (info.positions) drawTrajectories($("trajectory-chart"), result, t, uirevision);
  if (info.vectors) updateNthTimestep($("nth-view"), result, { ...state, uirevision });
  if (result.trace?.attention) {
    drawAttention($("attention-chart"), result.trace.attention, { ...state, uirevision });
    for (const id of ["input-gate-chart", "forget-gate-chart", "memory-norm-chart"])
      moveMarker($(id), t);
  } else {
    moveMarker($("lstm-gate-chart"), t);
    moveMarker($("lstm-state-chart"), t);
  }
  writeUrl();
}

function setTimestep(t) {
  if (!result) return;
  state.t = Math.max(0, Math.min(sequenceLength() - 1, t));
  updateTimestep();
}

function startPlaying() {
  if (!result) return;
  if (state.t >= sequenceLength() - 1) setTimestep(0);
  playButton.textContent = "Pause";
  playButton.setAttribute("aria-pressed", "true");
  playTimer = window.setInterval(() => {
    if (state.t >= sequenceLength() - 1) stopPlaying();
    else setTimestep(state.t + 1);
  }, PLAY_INTERVAL_MS);
}

function stopPlaying() {
  window.clearInterval(playTimer);
  playTimer = null;
  playButton.textContent = "Play";
  playButton.setAttribute("aria-pressed", "false");
}

function togglePlaying() {
  if (playTimer) stopPlaying();
  else startPlaying();
}

/**
 * Space toggles play, ← and → step. Keys typed into text fields and selects are left alone,
 * as are the slider's own arrow keys and a focused button's space (its native click).
 */
function handleKey(event) {
  if (!result || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  const tag = target.tagName;
  const isSlider = target === slider;
  if (
    (tag === "INPUT" && !isSlider) ||
    tag === "SELECT" ||
    tag === "TEXTAREA" ||
    target.isContentEditable
  )
    return;
  if (event.key === " ") {
    if (tag === "BUTTON" || tag === "A") return;
    event.preventDefault();
    togglePlaying();
  } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && !isSlider) {
    event.preventDefault();
    stopPlaying();
    setTimestep(state.t + (event.key === "ArrowRight" ? 1 : -1));
  }
}

/**
 * Read the seed box as a number, so that "1e3" is 1000. Return null, after showing an
 * error, for a value that is not a whole number from 0 to the box's maximum, which the
 * page template sets to the server's limit.
 */
function readSeed() {
  const maxSeed = Number(seedInput.max); // the server's limit, from the page template
  const text = seedInput.value.trim();
  const seed = Number(text);
  if (text === "" || !Number.isSafeInteger(seed) || seed < 0 || seed > maxSeed) {
    let received = `'${text}'`;
    if (seedInput.validity.badInput) received = "text that is not a number";
    else if (text === "") received = "an empty box";
    showError(`seed must be a whole number from 0 to ${maxSeed}, got ${received}.`);
    return null;
  }
  return seed;
}

$("explore-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.run = runSelect.value;
  const seed = readSeed();
  if (seed === null) return;
  state.seed = seed;
  seedInput.value = String(state.seed);
  generate();
});
runSelect.addEventListener("change", () => {
  state.run = runSelect.value;
  writeUrl();
});
slider.addEventListener("input", () => {
  stopPlaying();
  setTimestep(Number(slider.value));
});
headSelect.addEventListener("change", () => {
  state.head = Number(headSelect.value);
  updateTimestep();
});
blockSelect.addEventListener("change", () => {
  state.block = Number(blockSelect.value);
  updateTimestep();
});
playButton.addEventListener("click", togglePlaying);
$("lstm-gate-select").addEventListener("change", () => result && render());
$("lstm-state-select").addEventListener("change", () => result && render());
document.addEventListener("keydown", handleKey);

async function start() {
  Object.assign(state, readUrl());
  seedInput.value = String(state.seed);
  try {
    await loadRuns();
  } catch (error) {
    showError(error);
    return;
  }
  fromUrl = true;
  if (state.run) await generate();
}

addTableExport($("vector-table"), "nth-farthest-vectors");
start();
