// Sweeps page: the list of sweeps and a small form that posts a grid to POST /api/sweeps.

import { apiFetch, formatLocation, showError } from "./api.js";
import { element, formatTime, statusBadge } from "./format.js";
import { addTableExport } from "./table_export.js";

const AXIS_COUNT = 2;
const TRAINING_AXES = ["learning_rate", "batch_size", "steps"];

const $ = (id) => document.getElementById(id);
let specs = null;

function axisLabel(axis) {
  return `${axis.key} × ${axis.values.length}`;
}

async function renderSweeps() {
  const sweeps = await apiFetch("/api/sweeps");
  $("sweeps-table")
    .querySelector("tbody")
    .replaceChildren(
      ...sweeps.map((sweep) => {
        const total = Object.values(sweep.counts).reduce((sum, count) => sum + count, 0);
        const finished = total - sweep.counts.queued - sweep.counts.running;
        return element(
          "tr",
          { dataset: { sweepId: sweep.id } },
          element("td", {}, element("a", { href: `/sweeps/${sweep.id}` }, sweep.name)),
          element("td", {}, sweep.base.task),
          element("td", {}, sweep.axes.map(axisLabel).join(", ")),
          element("td", {}, sweep.seeds.join(", ")),
          element("td", {}, statusBadge(sweep.status)),
          element("td", { className: "number" }, `${finished} / ${total}`),
          element("td", {}, formatTime(sweep.created_at)),
        );
      }),
    );
  $("sweeps-empty").hidden = sweeps.length > 0;
}

/** Axis names the grid can vary for the chosen task and model. */
function axisChoices() {
  const task = specs.tasks.find((item) => item.name === $("sweep-task").value);
  const model = specs.models.find((item) => item.kind === $("sweep-model").value);
  const numeric = (spec) => spec.type === "int" || spec.type === "float" || spec.type === "choice";
  return [
    ...(model?.options ?? []).filter(numeric).map((spec) => `model_options.${spec.name}`),
    ...(task?.options ?? []).filter(numeric).map((spec) => `task_options.${spec.name}`),
    ...TRAINING_AXES,
    "model",
  ];
}

function renderAxes() {
  const choices = axisChoices();
  const defaults = ["model_options.mem_slots", "model_options.num_heads"];
  $("sweep-axes").replaceChildren(
    ...Array.from({ length: AXIS_COUNT }, (_, index) => {
      const select = element(
        "select",
        { id: `sweep-axis-${index}`, "data-testid": `sweep-axis-${index}` },
        element("option", { value: "" }, index === 0 ? "choose an axis" : "none"),
        ...choices.map((choice) => element("option", { value: choice }, choice)),
      );
      select.value = choices.includes(defaults[index]) ? defaults[index] : "";
      return element(
        "div",
        { className: "field" },
        element("label", { for: `sweep-axis-${index}` }, `Axis ${index + 1}`),
        select,
        element("label", { for: `sweep-values-${index}` }, `Axis ${index + 1} values`),
        element("input", {
          id: `sweep-values-${index}`,
          type: "text",
          placeholder: "e.g. 1, 2, 4",
          "data-testid": `sweep-values-${index}`,
        }),
      );
    }),
  );
}

/** Parse "1, 2.5, unit, null" into [1, 2.5, "unit", null]. */
function parseValues(text) {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean)
    .map((item) => {
      if (item === "null") return null;
      const number = Number(item);
      return Number.isFinite(number) ? number : item;
    });
}

function parseJson(id, name, example) {
  const text = $(id).value.trim();
  if (!text) return {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch {
    // fall through to the error below
  }
  const error = new Error(`${name} must be a JSON object such as ${example}, got ${text}`);
  error.fieldId = id;
  throw error;
}

function sweepBody() {
  const steps = Number.parseInt($("sweep-steps").value, 10);
  const grid = {};
  for (let index = 0; index < AXIS_COUNT; index += 1) {
    const key = $(`sweep-axis-${index}`).value;
    if (key) grid[key] = parseValues($(`sweep-values-${index}`).value);
  }
  const body = {
    base: {
      task: $("sweep-task").value,
      task_options: parseJson("sweep-task-options", "Task options", '{"num_steps": 10}'),
      model: $("sweep-model").value,
      model_options: parseJson("sweep-model-options", "Model options", '{"head_size": 16}'),
      steps,
      batch_size: Number.parseInt($("sweep-batch").value, 10),
      eval_size: Number.parseInt($("sweep-eval-size").value, 10),
      eval_interval: Math.max(1, Math.floor(steps / 4)),
      log_interval: Math.max(1, Math.floor(steps / 20)),
    },
    grid,
    seeds: parseValues($("sweep-seeds").value),
  };
  const name = $("sweep-name").value.trim();
  if (name) body.name = name;
  return body;
}

/** Name a field as the form does: `grid.model_options.mem_slots`, `seeds[0]`. */
function fieldName(loc) {
  const parts = Array.isArray(loc) && ["body", "query", "path"].includes(loc[0]) ? loc.slice(1) : loc;
  if (!Array.isArray(parts) || !parts.length) return formatLocation(loc);
  return parts.reduce(
    (name, part) => (typeof part === "number" ? `${name}[${part}]` : name ? `${name}.${part}` : part),
    "",
  );
}

/** Turn one validation error into a sentence that names the field once, the rule and the value. */
function describeError(item) {
  const field = fieldName(item.loc);
  const message = String(item.msg ?? "invalid value");
  // An error of one grid cell names the cell and the field of its run.
  if (message.startsWith("grid cell ")) return message;
  const got = item.input === undefined ? "" : `, got ${JSON.stringify(item.input)}`;
  if (item.type === "too_short") {
    const least = Number(item.ctx?.min_length ?? 1);
    return `${field} needs at least ${least} ${least === 1 ? "value" : "values"}`;
  }
  if (item.type === "int_parsing" || item.type === "int_type" || item.type === "int_from_float") {
    return `${field} must be an integer${got.replaceAll('"', "'")}`;
  }
  // The server's message already names the field, in dotted form.
  const dotted = formatLocation(item.loc);
  if (message.includes(dotted)) return message.replace(dotted, field);
  return `${field}: ${message}`;
}

/** Return the form control that a validation error's location points at, if there is one. */
function controlFor(loc) {
  const parts = Array.isArray(loc) && loc[0] === "body" ? loc.slice(1) : [];
  const [head, key] = parts;
  if (head === "seeds") return $("sweep-seeds");
  if (head === "name") return $("sweep-name");
  if (head === "grid") {
    for (let index = 0; index < AXIS_COUNT; index += 1) {
      if (key && $(`sweep-axis-${index}`).value === key) return $(`sweep-values-${index}`);
    }
    return $("sweep-axes");
  }
  const baseIds = {
    task: "sweep-task",
    model: "sweep-model",
    task_options: "sweep-task-options",
    model_options: "sweep-model-options",
    steps: "sweep-steps",
    batch_size: "sweep-batch",
    eval_size: "sweep-eval-size",
  };
  return head === "base" && baseIds[key] ? $(baseIds[key]) : null;
}

function clearFieldErrors() {
  for (const node of document.querySelectorAll("#sweep-form .field-error")) node.remove();
  for (const node of document.querySelectorAll("#sweep-form [aria-invalid]")) {
    node.removeAttribute("aria-invalid");
  }
}

/** Show `text` under `control`, beside any message already shown there. */
function showFieldError(control, text) {
  control.setAttribute("aria-invalid", "true");
  const existing = control.nextElementSibling;
  if (existing?.classList.contains("field-error")) {
    existing.textContent += `; ${text}`;
    return;
  }
  const note = element("p", { className: "field-error", "data-testid": `${control.id}-error` }, text);
  control.after(note);
}

async function launch(event) {
  event.preventDefault();
  clearFieldErrors();
  const status = $("sweep-launch-status");
  const button = $("sweep-launch");
  button.disabled = true;
  status.textContent = "Launching…";
  try {
    const sweep = await apiFetch("/api/sweeps", { method: "POST", body: sweepBody() });
    status.textContent = `Launched ${sweep.name} with ${sweep.runs.length} runs.`;
    window.location.assign(`/sweeps/${sweep.id}`);
  } catch (error) {
    const details = error.validationErrors ?? [];
    status.textContent = "Not launched.";
    const messages = details.map(describeError);
    details.forEach((item, index) => {
      const control = controlFor(item.loc);
      if (control) showFieldError(control, messages[index]);
    });
    if (error.fieldId) showFieldError($(error.fieldId), error.message);
    showError(messages.length ? messages.join("; ") : error);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  addTableExport($("sweeps-table"), "sweeps");
  const sweeps = renderSweeps().catch(showError);
  specs = await apiFetch("/api/tasks");
  $("sweep-task").replaceChildren(
    ...specs.tasks.map((task) => element("option", { value: task.name }, task.name)),
  );
  $("sweep-model").replaceChildren(
    ...specs.models.map((model) => element("option", { value: model.kind }, model.kind)),
  );
  $("sweep-model").value = "rmc";
  renderAxes();
  $("sweep-task").addEventListener("change", renderAxes);
  $("sweep-model").addEventListener("change", renderAxes);
  $("sweep-form").addEventListener("submit", launch);
  $("sweep-form").dataset.ready = "true";
  await sweeps;
}

start().catch(showError);
