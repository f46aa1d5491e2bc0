// JSON API access and the page-wide message box.

/** An HTTP error from the API, with the parsed FastAPI `detail` when there is one. */
export class ApiError extends Error {
  constructor(status, detail, path) {
    super(describeDetail(status, detail, path));
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.path = path;
  }

  /** Pydantic validation errors (`[{loc, msg, ...}]`) of a 422 response, or an empty list. */
  get validationErrors() {
    return this.status === 422 && Array.isArray(this.detail) ? this.detail : [];
  }
}

function describeDetail(status, detail, path) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => `${formatLocation(item.loc)}: ${item.msg}`).join("; ");
  }
  return `${path} failed with HTTP ${status}`;
}

/** Join a pydantic error location without the leading "body" part, e.g. "model_options.mem_slots". */
export function formatLocation(loc) {
  if (!Array.isArray(loc)) return "request";
  const parts = loc[0] === "body" || loc[0] === "query" || loc[0] === "path" ? loc.slice(1) : loc;
  return parts.length ? parts.join(".") : "request";
}

/**
 * Send a request to the JSON API and return the parsed body.
 * Throws ApiError for a non-2xx status and a plain Error when the server cannot be reached.
 */
export async function apiFetch(path, { method = "GET", body } = {}) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error(`Cannot reach the server for ${method} ${path}: ${error.message}`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const detail = data && typeof data === "object" && "detail" in data ? data.detail : data;
    throw new ApiError(response.status, detail, `${method} ${path}`);
  }
  return data;
}

const messageBox = () => document.getElementById("message-box");

/** Show `error` (an Error or a string) in the page's message box. */
export function showError(error) {
  showMessage(error instanceof Error ? error.message : String(error), "error");
}

/** Show a message in the page's message box; `kind` is "error" or "info". */
export function showMessage(text, kind = "info") {
  const box = messageBox();
  if (!box) return;
  box.querySelector(".message-text").textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

export function clearMessage() {
  const box = messageBox();
  if (box) box.hidden = true;
}

document.addEventListener("click", (event) => {
  if (event.target.closest(".message-close")) clearMessage();
});
