// A websocket to the server that reconnects with exponential backoff, a bounded number of times.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;

/**
 * Open `path` (e.g. "/ws/runs") and pass every parsed JSON message to `onMessage`.
 *
 * After a dropped connection it retries up to `maxRetries` times in a row; a successful
 * open resets the count. `onState` receives "connecting", "open", "retrying" or "closed".
 * Returns an object whose close() stops the socket for good.
 */
export function connectSocket(path, { onMessage, onState = () => {}, maxRetries = 8 } = {}) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${window.location.host}${path}`;
  let socket = null;
  let failures = 0;
  let stopped = false;
  let timer = null;

  function open() {
    onState("connecting");
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      failures = 0;
      onState("open");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("Ignoring a websocket message that is not JSON", event.data);
        return;
      }
      onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (stopped) return;
      // 1000 is a normal close from the server (e.g. the run was deleted): do not retry.
      if (event.code === 1000 || failures >= maxRetries) {
        onState("closed");
        return;
      }
      const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** failures);
      failures += 1;
      onState("retrying");
      timer = setTimeout(open, delay);
    });
  }

  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close();
    },
  };
}
