// CSV and JSON downloads of any table on a page, read from the table as it is shown when
// the button is pressed, so live tables export their current rows.

import { element } from "./format.js";

// The text that tables show for a missing value.
const MISSING_TEXT = "–";

/**
 * Return what an export holds for one cell: its `data-value` attribute, the raw number
 * behind a formatted text such as "27 s", when the table sets one, otherwise its text.
 * A missing value ("–") exports as an empty cell.
 */
function cellValue(cell) {
  const text = cell.dataset.value ?? cell.textContent.trim();
  return text === MISSING_TEXT ? "" : text;
}

/**
 * Read a table's header texts and body rows as [headers, rows of cell values]. A table
 * without a header row (the key-value tables) gets the headers "field" and "value".
 */
export function readTable(table) {
  const rows = [...table.querySelectorAll("tbody tr")].map((row) => [...row.children].map(cellValue));
  const headerRow = table.querySelector("thead tr");
  const headers = headerRow
    ? [...headerRow.children].map((cell, index) => cell.textContent.trim() || `column ${index}`)
    : ["field", "value"];
  return [headers, rows];
}

function csvCell(text) {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Format a table as CSV (RFC 4180 quoting), header row first. */
export function tableCsv(table) {
  const [headers, rows] = readTable(table);
  return [headers, ...rows].map((row) => row.map(csvCell).join(",")).join("\n") + "\n";
}

/** Format a table as a JSON array with one object per row, keyed by the column headers. */
export function tableJson(table) {
  const [headers, rows] = readTable(table);
  const records = rows.map((row) =>
    Object.fromEntries(row.map((text, index) => [headers[index] ?? `column ${index}`, text])),
  );
  return JSON.stringify(records, null, 2);
}

function download(text, fileName, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = element("a", { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/**
 * Put "CSV" and "JSON" download buttons after `table` (or after its scroll container).
 * `fileName` is the base name of the downloads, without extension.
 */
export function addTableExport(table, fileName) {
  if (!table || table.dataset.exportable) return;
  table.dataset.exportable = "true";
  const label = table.id || fileName;
  const bar = element(
    "div",
    { className: "toolbar table-export", "data-testid": `export-${label}` },
    element(
      "button",
      {
        type: "button",
        "data-testid": `export-${label}-csv`,
        onclick: () => download(tableCsv(table), `${fileName}.csv`, "text/csv"),
      },
      "Table CSV",
    ),
    element(
      "button",
      {
        type: "button",
        "data-testid": `export-${label}-json`,
        onclick: () => download(tableJson(table), `${fileName}.json`, "application/json"),
      },
      "Table JSON",
    ),
  );
  const anchor = table.closest(".table-scroll") ?? table;
  anchor.after(bar);
}
