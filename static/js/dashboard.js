// Dashboard: the runs table kept live from /ws/runs, and the launch form.

import { showError } from "./api.js";
import { LaunchForm } from "./launch_form.js";
import { RunsTable } from "./runs_table.js";
import { connectSocket } from "./socket.js";

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

const form = new LaunchForm({
  form: document.getElementById("launch-form"),
  onLaunched: (runs) => runs.forEach((run) => table.upsert(run)),
});
form.load().catch(showError);
