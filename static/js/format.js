// Number, time and DOM formatting shared by the pages.

/** Format a number compactly: fixed digits for ordinary sizes, exponent notation otherwise. */
export function formatNumber(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return value.toLocaleString("en-US");
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export function formatPercent(value) {
  if (value === null || value === undefined) return "–";
  return `${(100 * value).toFixed(1)}%`;
}

/** Format seconds as "42 s", "3 min 5 s" or "1 h 12 min". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) return `${total} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${total % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Format an ISO-8601 timestamp in the browser's local time. */
export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/**
 * Create an element: `attributes` sets properties (className, textContent, dataset.*,
 * on* handlers) and attributes; `children` are nodes or strings, appended as text.
 */
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && name !== "list" && name !== "form") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Build a status badge, coloured per status by the stylesheet. */
export function statusBadge(status) {
  return element("span", { className: `status status-${status}`, dataset: { status } }, status);
}

/** Flatten a nested config into [["task_options.num_objects", 3], ...], sorted by key. */
export function flattenConfig(config, prefix = "") {
  const rows = [];
  for (const [key, value] of Object.entries(config ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) {
      rows.push(...flattenConfig(value, path));
    } else {
      rows.push([path, value]);
    }
  }
  return rows.sort((a, b) => a[0].localeCompare(b[0]));
}

/** Display a config value: lists as "[a, b]", null as "none". */
export function formatValue(value) {
  if (value === null || value === undefined) return "none";
  if (Array.isArray(value)) return `[${value.join(", ")}]`;
  if (typeof value === "number") return formatNumber(value, 6);
  return String(value);
}

/** Return whether the run is queued or running, so it can be cancelled but not deleted. */
export function isActive(run) {
  return run.status === "queued" || run.status === "running";
}
