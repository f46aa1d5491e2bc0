// The dashboard's runs table: one row per run, updated from the /ws/runs stream.

import { apiFetch, showError, showMessage } from "./api.js";
import {
  element,
  formatNumber,
  formatPercent,
  formatTime,
  isActive,
  statusBadge,
} from "./format.js";

export class RunsTable {
  constructor({ body, empty, compareButton }) {
    this.body = body;
    this.empty = empty;
    this.compareButton = compareButton;
    this.runs = new Map();
    this.selected = new Set();
    compareButton.addEventListener("click", () => this.openCompare());
  }

  /** Replace every row with `runs` (a websocket snapshot). */
  replaceAll(runs) {
    this.runs = new Map(runs.map((run) => [run.id, run]));
    for (const id of [...this.selected]) {
      if (!this.runs.has(id)) this.selected.delete(id);
    }
    this.render();
  }

  upsert(run) {
    this.runs.set(run.id, run);
    this.render();
  }

  remove(runId) {
    this.runs.delete(runId);
    this.selected.delete(runId);
    this.render();
  }

  /** Update one run's progress bar in place, without redrawing the table. */
  updateProgress(runId, step, steps) {
    const run = this.runs.get(runId);
    if (!run) return;
    run.progress = { step, steps };
    const row = this.body.querySelector(`tr[data-run-id="${runId}"]`);
    if (row) row.querySelector(".progress-cell").replaceWith(progressCell(run));
  }

  render() {
    const runs = [...this.runs.values()].sort((a, b) =>
      (b.created_at ?? "").localeCompare(a.created_at ?? ""),
    );
    this.body.replaceChildren(...runs.map((run) => this.row(run)));
    this.empty.hidden = runs.length > 0;
    this.compareButton.disabled = this.selected.size < 2;
  }

  row(run) {
    const checkbox = element("input", {
      type: "checkbox",
      checked: this.selected.has(run.id),
      "aria-label": `Select ${run.name} for comparison`,
      "data-testid": `select-${run.id}`,
      onchange: (event) => {
        if (event.target.checked) this.selected.add(run.id);
        else this.selected.delete(run.id);
        this.compareButton.disabled = this.selected.size < 2;
      },
    });
    const metrics = run.final_metrics ?? {};
    return element(
      "tr",
      { dataset: { runId: run.id, status: run.status }, "data-testid": `run-row-${run.id}` },
      element("td", {}, checkbox),
      element("td", {}, element("a", { href: `/runs/${run.id}`, className: "run-name" }, run.name)),
      element("td", {}, run.model),
      element("td", { className: "nowrap" }, run.task),
      element("td", {}, statusBadge(run.status)),
      progressCell(run),
      element("td", { className: "number" }, formatNumber(metrics.final_test_loss)),
      element("td", { className: "number" }, formatPercent(metrics.final_test_accuracy)),
      element("td", {}, formatTime(run.created_at)),
      element("td", { className: "actions" }, ...this.actions(run)),
    );
  }

  actions(run) {
    const open = element("a", { href: `/runs/${run.id}`, className: "button-link" }, "Open");
    const cancel = element(
      "button",
      {
        type: "button",
        disabled: !isActive(run),
        "aria-label": `Cancel ${run.name}`,
        "data-testid": `cancel-${run.id}`,
        onclick: () => this.cancel(run),
      },
      "Cancel",
    );
    const remove = element(
      "button",
      {
        type: "button",
        className: "danger",
        disabled: run.status === "running",
        "aria-label": `Delete ${run.name}`,
        "data-testid": `delete-${run.id}`,
        onclick: () => this.delete(run),
      },
      "Delete",
    );
    return [open, cancel, remove];
  }

  async cancel(run) {
    try {
      const updated = await apiFetch(`/api/runs/${run.id}/cancel`, { method: "POST" });
      if (updated && updated.id) this.upsert(updated);
      showMessage(`Cancel requested for ${run.name}.`);
    } catch (error) {
      showError(error);
    }
  }

  async delete(run) {
    if (!window.confirm(`Delete ${run.name}, its metrics and its checkpoint?`)) return;
    try {
      await apiFetch(`/api/runs/${run.id}`, { method: "DELETE" });
      this.remove(run.id);
      showMessage(`Deleted ${run.name}.`);
    } catch (error) {
      showError(error);
    }
  }

  openCompare() {
    const ids = [...this.selected];
    if (ids.length < 2) return;
    window.location.href = `/compare?runs=${ids.map(encodeURIComponent).join(",")}`;
  }
}

function progressCell(run) {
  const { step = 0, steps = 0 } = run.progress ?? {};
  const label = steps ? `${formatNumber(step)} / ${formatNumber(steps)}` : "–";
  const bar = element("progress", {
    max: steps || 1,
    value: step,
    "aria-label": `${run.name} progress: ${label} steps`,
  });
  return element(
    "td",
    { className: "progress-cell" },
    bar,
    element("span", { className: "progress-text" }, label),
  );
}
