// Form inputs built from option specs ({name, type, default, min, max, help, choices}),
// reading their values back, and showing validation errors beside them.

import { element, formatNumber } from "./format.js";

function isListSpec(spec) {
  return /list/.test(spec.type ?? "") || Array.isArray(spec.default);
}

function isNullable(spec) {
  return spec.default === null || spec.nullable === true;
}

// Form wording for options whose API help explains a missing value as JSON null. In the
// form, that value is an empty field or the choice "none".
const FORM_HELP = {
  key_size: "Query and key size per head; leave empty to use head_size.",
  gate_style: "Gates per memory unit ('unit'), one per slot ('memory'), or no gates ('none').",
  clip_norm: "Maximum global gradient norm; leave empty for no clipping.",
  time_limit_minutes:
    "Wall-clock limit of training in minutes; the run then ends as completed. Leave empty for no limit.",
};

function rangeHint(spec, help) {
  const parts = [];
  const hasMin = spec.min !== null && spec.min !== undefined;
  const hasMax = spec.max !== null && spec.max !== undefined;
  if (hasMin && spec.exclusive_min) {
    const upper = hasMax ? `, at most ${formatNumber(spec.max)}` : "";
    parts.push(`greater than ${formatNumber(spec.min)}${upper}`);
  } else if (hasMin && hasMax) {
    parts.push(`${formatNumber(spec.min)} to ${formatNumber(spec.max)}`);
  } else if (hasMin) {
    parts.push(`at least ${formatNumber(spec.min)}`);
  } else if (hasMax) {
    parts.push(`at most ${formatNumber(spec.max)}`);
  }
  if (isNullable(spec) && !/\bempty\b/.test(help ?? "")) parts.push("leave empty for none");
  if (isListSpec(spec)) parts.push("comma-separated widths");
  return parts.join("; ");
}

function buildControl(spec, id) {
  const common = { id, name: spec.name, dataset: { name: spec.name } };
  if (Array.isArray(spec.choices)) {
    const select = element("select", common);
    for (const choice of spec.choices) {
      select.append(element("option", { value: JSON.stringify(choice) }, choice ?? "none"));
    }
    return select;
  }
  if (spec.type === "bool") return element("input", { ...common, type: "checkbox" });
  if (isListSpec(spec)) {
    return element("input", {
      ...common,
      type: "text",
      placeholder: "e.g. 128, 128",
      dataset: { ...common.dataset, list: "1" },
    });
  }
  if (spec.type === "int" || spec.type === "float") {
    return element("input", {
      ...common,
      type: "number",
      inputMode: spec.type === "int" ? "numeric" : "decimal",
      step: spec.type === "int" ? "1" : "any",
      min: spec.min ?? undefined,
      max: spec.max ?? undefined,
    });
  }
  return element("input", { ...common, type: "text" });
}

/**
 * Build a labelled field for `spec`. `scope` makes the ids unique (e.g. "rmc"), `path` is the
 * request field it fills (e.g. "model_options.mem_slots"), used to place server errors.
 */
export function buildField(spec, { scope, path }) {
  const id = `field-${scope}-${spec.name}`;
  const errorId = `error-${scope}-${spec.name}`;
  const hintId = `hint-${scope}-${spec.name}`;
  const control = buildControl(spec, id);
  control.dataset.field = path;
  control.setAttribute("data-testid", id);
  control.setAttribute("aria-describedby", `${hintId} ${errorId}`);
  control._spec = spec;
  setFieldValue(control, spec.default);

  const help = FORM_HELP[spec.name] ?? spec.help;
  const hintText = [rangeHint(spec, help), help].filter(Boolean).join(". ");
  const label = element("label", { for: id }, spec.label ?? spec.name.replaceAll("_", " "));
  const hint = element("p", { className: "hint", id: hintId }, hintText);
  const error = element("p", {
    className: "field-error",
    id: errorId,
    hidden: true,
    "data-testid": errorId,
    dataset: { errorFor: path },
  });
  const wrapperClass = spec.type === "bool" ? "field checkbox" : "field";
  return spec.type === "bool"
    ? element("div", { className: wrapperClass }, control, label, hint, error)
    : element("div", { className: wrapperClass }, label, control, hint, error);
}

/** Set a control built by buildField to `value` in the request's terms. */
export function setFieldValue(control, value) {
  if (control.type === "checkbox") control.checked = Boolean(value);
  else if (control.tagName === "SELECT") control.value = JSON.stringify(value ?? null);
  else if (Array.isArray(value)) control.value = value.join(", ");
  else control.value = value === null || value === undefined ? "" : String(value);
}

/**
 * Read a control built by buildField. Returns `undefined` for an empty optional field (so the
 * server default applies). Text that is not a number is sent as typed so that the server's
 * validation names the field.
 */
export function readFieldValue(control) {
  const spec = control._spec ?? {};
  if (control.type === "checkbox") return control.checked;
  if (control.tagName === "SELECT") return JSON.parse(control.value);
  const text = control.value.trim();
  if (control.dataset.list) {
    // "128, 128", "128 128" and "[128, 128]" are lists, and "" and "[]" the empty list.
    // An empty item, as in "1,,2", makes the text invalid, so it is sent as typed.
    const inner = text.replace(/^\[(.*)\]$/s, "$1").trim();
    if (inner === "") return [];
    const items = inner.split(/\s*,\s*|\s+/);
    const numbers = items.map((item) => (item === "" ? Number.NaN : Number(item)));
    return numbers.some(Number.isNaN) ? text : numbers;
  }
  if (text === "") {
    if (control.validity && control.validity.badInput) return control.value || "invalid";
    return isNullable(spec) ? null : undefined;
  }
  if (control.type === "number") {
    const number = Number(text);
    return Number.isNaN(number) ? text : number;
  }
  return text;
}

/** Return whether `control` is a required number field left empty (so it has no value). */
export function isMissing(control) {
  const spec = control._spec ?? {};
  if (control.type !== "number" || isNullable(spec)) return false;
  return control.value.trim() === "" && !(control.validity && control.validity.badInput);
}

/** Read every field in `container` into an object keyed by option name. */
export function readFields(container) {
  const values = {};
  for (const control of container.querySelectorAll("[data-field]")) {
    const value = readFieldValue(control);
    if (value !== undefined) values[control.dataset.name] = value;
  }
  return values;
}

/** Hide every error message in `form` and clear aria-invalid. */
export function clearFieldErrors(form) {
  for (const error of form.querySelectorAll(".field-error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const control of form.querySelectorAll("[aria-invalid]"))
    control.removeAttribute("aria-invalid");
}

/** Show `message` under `control`; returns false when the control has no error element. */
export function showFieldError(control, message) {
  const errorId = (control.getAttribute("aria-describedby") ?? "")
    .split(" ")
    .find((id) => id.startsWith("error-"));
  const error = errorId
    ? document.getElementById(errorId)
    : control.closest(".field")?.querySelector(".field-error");
  if (!error) return false;
  error.textContent = error.textContent ? `${error.textContent} ${message}` : message;
  error.hidden = false;
  control.setAttribute("aria-invalid", "true");
  return true;
}
