// Dashboard: the runs table kept live from /ws/runs, and the launch form. A pair launch
// goes through POST /api/pairs, which can match the LSTM's parameter count to the RMC's.

import { apiFetch, showError } from "./api.js";
import { element } from "./format.js";
import { clearFieldErrors } from "./form_fields.js";
import { LaunchForm } from "./launch_form.js";
import { RunsTable } from "./runs_table.js";
import { connectSocket } from "./socket.js";
import { addTableExport } from "./table_export.js";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  retrying: "Connection lost, retrying…",
  closed: "Disconnected: reload the page to reconnect",
};

const table = new RunsTable({
  body: document.getElementById("runs-body"),
  empty: document.getElementById("runs-empty"),
  compareButton: document.getElementById("compare-button"),
});

const connection = document.getElementById("runs-connection");

connectSocket("/ws/runs", {
  onState: (state) => {
    connection.textContent = CONNECTION_TEXT[state];
    connection.dataset.state = state;
  },
  onMessage: (message) => {
    if (message.type === "snapshot") table.replaceAll(message.runs);
    else if (message.type === "status") table.upsert(message.run);
    else if (message.type === "progress")
      table.updateProgress(message.run_id, message.step, message.steps);
  },
});

/**
 * Split the 422 errors of POST /api/pairs by run: "base" fields belong to the RMC and
 * "lstm_options" to the LSTM's model options, each relocated as a POST /api/runs error.
 */
function pairErrorsByKind(errors) {
  const byKind = { rmc: [], lstm: [] };
  for (const item of errors) {
    const [, group, ...rest] = item.loc ?? [];
    if (group === "lstm_options") {
      byKind.lstm.push({ ...item, loc: ["body", "model_options", ...rest] });
    } else {
      byKind.rmc.push({ ...item, loc: ["body", ...(group === "base" ? rest : [group, ...rest])] });
    }
  }
  return byKind;
}

class PairLaunchForm extends LaunchForm {
  async submit() {
    if (!this.pairBox.checked) return super.submit();
    clearFieldErrors(this.form);
    const button = document.getElementById("launch-button");
    const matched = document.getElementById("field-match-parameters").checked;
    button.disabled = true;
    this.status.textContent = "Launching…";
    try {
      const pair = await apiFetch("/api/pairs", {
        method: "POST",
        body: {
          base: this.request("rmc"),
          lstm_options: this.request("lstm").model_options,
          match_parameters: matched,
        },
      });
      const [rmc, lstm] = pair.runs;
      this.status.replaceChildren(
        "Launched ",
        element("a", { href: `/runs/${rmc.id}`, "data-testid": "launched-link" }, rmc.name),
        ", ",
        element("a", { href: `/runs/${lstm.id}`, "data-testid": "launched-link" }, lstm.name),
        matched
          ? ` (LSTM hidden size ${pair.lstm_hidden_size}: ${pair.parameters.lstm} parameters ` +
              `against the RMC's ${pair.parameters.rmc})`
          : "",
        ". ",
        element("a", { href: pair.url, "data-testid": "pair-link" }, "Watch both live"),
      );
      this.onLaunched(pair.runs);
    } catch (error) {
      const byKind = pairErrorsByKind(error.validationErrors ?? []);
      if (!byKind.rmc.length && !byKind.lstm.length) showError(error);
      for (const kind of ["rmc", "lstm"]) {
        if (byKind[kind].length) this.showErrors({ validationErrors: byKind[kind] }, kind);
      }
      this.status.textContent = "Not launched: see the messages beside the fields.";
    } finally {
      button.disabled = false;
    }
  }
}

const form = new PairLaunchForm({
  form: document.getElementById("launch-form"),
  onLaunched: (runs) => runs.forEach((run) => table.upsert(run)),
});
form.load().catch(showError);

const pairBox = document.getElementById("field-pair");
const showMatchField = () => {
  document.getElementById("match-field").hidden = !pairBox.checked;
};
pairBox.addEventListener("change", showMatchField);
// A preset may check the pair box without a change event.
document.getElementById("presets").addEventListener("click", showMatchField);
addTableExport(document.getElementById("runs-table"), "runs");
