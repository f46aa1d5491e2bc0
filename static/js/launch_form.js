// The dashboard's launch form, built from GET /api/tasks and posted to POST /api/runs.

import { apiFetch, formatLocation, showError } from "./api.js";
import { element } from "./format.js";
import {
  buildField,
  clearFieldErrors,
  isMissing,
  readFields,
  setFieldValue,
  showFieldError,
} from "./form_fields.js";

// Every task here has one target per sequence, so a model that reads out every step cannot
// train on it. The option stays available through the API.
const HIDDEN_MODEL_OPTIONS = new Set(["per_step_targets"]);

// Fields of a run request that are not training settings.
const RUN_IDENTITY_FIELDS = new Set(["task", "task_options", "model", "model_options"]);

const MODEL_LABELS = { rmc: "RMC (relational memory core)", lstm: "LSTM" };

/**
 * Read GET /api/tasks: tasks, models and training fields, each option with its type, default
 * and limits, and the launch presets. A preset's `alternative` (a smaller version of it)
 * becomes a preset of its own, and the RMC comes first because this tool is about it.
 */
export function readSpecs(raw) {
  const presets = (raw.presets ?? []).flatMap((preset) =>
    preset.alternative
      ? [preset, { ...preset.alternative, alternativeOf: preset.title ?? preset.name }]
      : [preset],
  );
  const models = [...raw.models].sort((a, b) => (b.kind === "rmc") - (a.kind === "rmc"));
  return { tasks: raw.tasks, models, training: raw.training, presets };
}

export class LaunchForm {
  constructor({ form, onLaunched }) {
    this.form = form;
    this.onLaunched = onLaunched;
    this.taskSelect = form.querySelector("#field-task");
    this.modelSelect = form.querySelector("#field-model");
    this.pairBox = form.querySelector("#field-pair");
    this.taskOptions = form.querySelector("#task-options");
    this.modelOptions = form.querySelector("#model-options");
    this.trainingOptions = form.querySelector("#training-options");
    this.status = document.getElementById("launch-status");
    this.presetNote = document.getElementById("preset-note");
  }

  async load() {
    this.specs = readSpecs(await apiFetch("/api/tasks"));
    this.taskSelect.replaceChildren(
      ...this.specs.tasks.map((task) => element("option", { value: task.name }, task.name)),
    );
    this.modelSelect.replaceChildren(
      ...this.specs.models.map((model) =>
        element("option", { value: model.kind }, MODEL_LABELS[model.kind] ?? model.kind),
      ),
    );
    this.renderTaskOptions();
    this.renderModelOptions();
    this.renderTrainingOptions();
    this.renderPresets();

    this.taskSelect.addEventListener("change", () => this.renderTaskOptions());
    this.modelSelect.addEventListener("change", () => this.showModelOptions());
    this.pairBox.addEventListener("change", () => this.showModelOptions());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.form.dataset.ready = "true";
  }

  currentTask() {
    return this.specs.tasks.find((task) => task.name === this.taskSelect.value);
  }

  renderTaskOptions() {
    const task = this.currentTask();
    document.getElementById("task-description").textContent = task?.description ?? "";
    this.taskOptions.replaceChildren(
      ...(task?.options ?? []).map((spec) =>
        buildField(spec, { scope: "task", path: `task_options.${spec.name}` }),
      ),
    );
  }

  renderModelOptions() {
    this.modelOptions.replaceChildren(
      ...this.specs.models.map((model) =>
        element(
          "fieldset",
          {
            className: "model-options",
            dataset: { model: model.kind },
            "data-testid": `model-options-${model.kind}`,
          },
          element("legend", {}, `${MODEL_LABELS[model.kind] ?? model.kind} hyperparameters`),
          element("p", {
            className: "field-error group-error",
            hidden: true,
            role: "alert",
            "data-testid": `error-group-${model.kind}`,
          }),
          element(
            "div",
            { className: "field-grid" },
            ...model.options
              .filter((spec) => !HIDDEN_MODEL_OPTIONS.has(spec.name))
              .map((spec) =>
                buildField(spec, { scope: model.kind, path: `model_options.${spec.name}` }),
              ),
          ),
        ),
      ),
    );
    this.showModelOptions();
  }

  renderTrainingOptions() {
    this.trainingOptions.replaceChildren(
      ...this.specs.training.map((spec) => buildField(spec, { scope: "train", path: spec.name })),
    );
  }

  /**
   * Add one button per preset of GET /api/tasks. The label marks a slow preset, and a
   * preset that launches its runs at once.
   */
  renderPresets() {
    const group = document.getElementById("presets");
    for (const preset of this.specs.presets) {
      let label = preset.title;
      if (preset.too_slow_for_laptop) label = `${preset.title} (too slow for a laptop)`;
      else if (preset.launch_directly) label = `${preset.title}: launch ${preset.runs.length} runs`;
      group.append(
        element(
          "button",
          {
            type: "button",
            className: preset.too_slow_for_laptop ? "preset slow" : "preset",
            "data-testid": `preset-${preset.name}`,
            onclick: () =>
              preset.launch_directly ? this.launchPreset(preset) : this.applyPreset(preset),
          },
          label ?? preset.name,
        ),
      );
    }
    group.hidden = this.specs.presets.length === 0;
  }

  /**
   * Launch every run of a preset unchanged, then open the compare page of the launched
   * runs. Used by presets whose settings are the experiment (`launch_directly`).
   */
  async launchPreset(preset) {
    const buttons = document.querySelectorAll("#presets button");
    buttons.forEach((button) => (button.disabled = true));
    this.presetNote.textContent = `${preset.title}: ${preset.description}`;
    this.presetNote.classList.remove("warning");
    this.presetNote.hidden = false;
    this.status.textContent = `Launching ${preset.title}…`;
    const launched = [];
    try {
      for (const body of preset.runs ?? []) {
        launched.push(await apiFetch("/api/runs", { method: "POST", body }));
      }
    } catch (error) {
      const done = launched.map((run) => run.name).join(", ");
      this.status.textContent = done
        ? `Launched ${done}; the next run was rejected.`
        : `${preset.title} was not launched.`;
      showError(error);
      return;
    } finally {
      buttons.forEach((button) => (button.disabled = false));
      if (launched.length) this.onLaunched(launched);
    }
    const ids = launched.map((run) => run.id).join(",");
    window.location.assign(`/compare?runs=${ids}&live=1`);
  }

  /**
   * Mark every empty required field of the runs of `kinds`; returns whether there was one.
   * The server would fill in its default, which an API client may rely on, but in the form
   * an empty field is more likely a mistake than a request for the default.
   */
  showMissingFields(kinds) {
    const containers = [
      this.taskOptions,
      this.trainingOptions,
      ...kinds.map((kind) => this.modelOptions.querySelector(`fieldset[data-model="${kind}"]`)),
    ];
    const missing = containers
      .filter(Boolean)
      .flatMap((container) => [...container.querySelectorAll("[data-field]")])
      .filter(isMissing);
    for (const control of missing) showFieldError(control, `${control.dataset.name} is required`);
    if (!missing.length) return false;
    this.status.textContent = "Not launched: see the messages beside the fields.";
    missing[0].focus();
    return true;
  }

  /** Show the chosen model's fieldset, or both when launching a pair. */
  showModelOptions() {
    const pair = this.pairBox.checked;
    this.modelSelect.disabled = pair;
    for (const fieldset of this.modelOptions.querySelectorAll("fieldset[data-model]")) {
      fieldset.hidden = !pair && fieldset.dataset.model !== this.modelSelect.value;
    }
  }

  /**
   * Fill the form from a preset: its runs are complete POST /api/runs bodies, one per model
   * kind, sharing task and training settings. Fields a preset leaves out get their defaults.
   */
  applyPreset(preset) {
    const runs = preset.runs ?? [];
    const first = runs[0];
    if (!first) return;
    const { task, task_options: taskOptions, model } = first;
    const training = Object.fromEntries(
      Object.entries(first).filter(([name]) => !RUN_IDENTITY_FIELDS.has(name)),
    );
    if (this.specs.tasks.some((item) => item.name === task)) this.taskSelect.value = task;
    this.renderTaskOptions();
    this.renderModelOptions();
    this.renderTrainingOptions();
    this.setValues(this.taskOptions, taskOptions);
    for (const run of runs) {
      const fieldset = this.modelOptions.querySelector(`fieldset[data-model="${run.model}"]`);
      if (fieldset) this.setValues(fieldset, run.model_options);
    }
    this.setValues(this.trainingOptions, training);
    this.modelSelect.value = model;
    this.pairBox.checked = runs.length > 1;
    this.showModelOptions();

    const parts = [`${preset.title}: ${preset.description}`];
    if (preset.warning) parts.push(preset.warning);
    if (preset.alternativeOf) parts.push(`A laptop-sized version of ${preset.alternativeOf}.`);
    this.presetNote.textContent = parts.join(" ");
    this.presetNote.classList.toggle("warning", Boolean(preset.too_slow_for_laptop));
    this.presetNote.hidden = false;
    clearFieldErrors(this.form);
  }

  setValues(container, values) {
    for (const [name, value] of Object.entries(values ?? {})) {
      const control = container.querySelector(`[data-name="${name}"]`);
      if (control) setFieldValue(control, value);
    }
  }

  /** Build the request body for one run of model `kind`. */
  request(kind) {
    const fieldset = this.modelOptions.querySelector(`fieldset[data-model="${kind}"]`);
    return {
      task: this.taskSelect.value,
      task_options: readFields(this.taskOptions),
      model: kind,
      model_options: fieldset ? readFields(fieldset) : {},
      ...readFields(this.trainingOptions),
    };
  }

  async submit() {
    clearFieldErrors(this.form);
    const kinds = this.pairBox.checked ? ["rmc", "lstm"] : [this.modelSelect.value];
    if (this.showMissingFields(kinds)) return;
    const button = document.getElementById("launch-button");
    button.disabled = true;
    this.status.textContent = "Launching…";
    const launched = [];
    try {
      for (const kind of kinds) {
        try {
          launched.push(await apiFetch("/api/runs", { method: "POST", body: this.request(kind) }));
        } catch (error) {
          this.showErrors(error, kind, kinds.length > 1);
          this.status.textContent = launched.length
            ? `Launched ${launched.map((run) => run.name).join(", ")}; the ${kind} run was rejected.`
            : "Not launched: see the messages beside the fields.";
          return;
        }
      }
      this.status.replaceChildren(
        "Launched ",
        ...launched.flatMap((run, index) => [
          index ? ", " : "",
          element("a", { href: `/runs/${run.id}`, "data-testid": "launched-link" }, run.name),
        ]),
        ".",
      );
    } finally {
      button.disabled = false;
      if (launched.length) this.onLaunched(launched);
    }
  }

  /**
   * Place each validation error of a rejected request beside its field. An error about the
   * model as a whole (location "model_options") goes to the hyperparameter group and marks
   * the options its message names. `pair` is true when this run is one of an RMC + LSTM pair.
   */
  showErrors(error, kind, pair = false) {
    const errors = error.validationErrors ?? [];
    if (!errors.length) {
      showError(error);
      return;
    }
    const unplaced = [];
    for (const item of errors) {
      const message = describeError(item);
      if (formatLocation(item.loc) === "model_options" && this.showGroupError(kind, message)) {
        continue;
      }
      const control = this.findControl(item.loc, kind, item.msg ?? "");
      if (!control || !showFieldError(control, message)) {
        unplaced.push(`${formatLocation(item.loc)}: ${message}`);
      }
    }
    const subject = pair ? `The ${kind} run` : "The run";
    if (unplaced.length) showError(`${subject} was rejected. ${unplaced.join("; ")}`);
    const first = this.form.querySelector("[aria-invalid='true']");
    if (first) first.focus();
  }

  /** Show `message` at the top of model `kind`'s hyperparameters; false when there is none. */
  showGroupError(kind, message) {
    const fieldset = this.modelOptions.querySelector(`fieldset[data-model="${kind}"]`);
    const box = fieldset?.querySelector(".group-error");
    if (!box) return false;
    box.textContent = box.textContent ? `${box.textContent} ${message}` : message;
    box.hidden = false;
    for (const control of fieldset.querySelectorAll("[data-field]")) {
      if (new RegExp(`\\b${control.dataset.name}\\b`).test(message)) {
        control.setAttribute("aria-invalid", "true");
      }
    }
    return true;
  }

  /**
   * Find the control for a pydantic error location such as ["body", "model_options", "mem_slots"]:
   * the longest prefix that names a field, else the last part that is a field name, else a
   * field of the named group that the message mentions.
   */
  findControl(loc, kind, message = "") {
    const parts = formatLocation(loc).split(".");
    const candidates = [...this.form.querySelectorAll("[data-field]")].filter((control) => {
      const fieldset = control.closest("fieldset[data-model]");
      return !fieldset || fieldset.dataset.model === kind;
    });
    for (let length = parts.length; length > 0; length -= 1) {
      const path = parts.slice(0, length).join(".");
      const match = candidates.find((control) => control.dataset.field === path);
      if (match) return match;
    }
    for (const part of [...parts].reverse()) {
      const match = candidates.find((control) => control.dataset.name === part);
      if (match) return match;
    }
    // A check across several options may report only the group (e.g. "model_options") and
    // name the option in its message.
    const group = candidates.filter((control) => control.dataset.field.startsWith(`${parts[0]}.`));
    return (
      group.find((control) => new RegExp(`\\b${control.dataset.name}\\b`).test(message)) ?? null
    );
  }
}

/** Return the server's message, adding the received value only when the message omits it. */
function describeError(item) {
  const input = item.input;
  const message = item.msg ?? "invalid value";
  if (input === undefined || input === null || typeof input === "object") return message;
  const written = [JSON.stringify(input)];
  if (typeof input === "number") written.push(input.toLocaleString("en-US"));
  if (/\bgot\b/.test(message) || written.some((text) => message.includes(text))) return message;
  return `${message} (got ${JSON.stringify(input)})`;
}
