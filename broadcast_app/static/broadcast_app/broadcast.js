// broadcast.js: follow a broadcast_app stream URL from a browser. An ES module with no
// dependency and no build step; its API is documented in docs/browser.md.
//
// It reads the stream with fetch() rather than EventSource: EventSource never shows the
// page an HTTP status or a Retry-After header, and it gives up for good on a 503.
// Events are parsed as the WHATWG HTML standard's "event stream interpretation" says
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

/** Milliseconds before reconnecting until the server sends a `retry:` field. */
const DEFAULT_RETRY_MS = 3000;
/** Longest wait between two attempts, in milliseconds, unless the server asks for more. */
const DEFAULT_MAX_RETRY_MS = 30000;
/** Waits are stretched by up to this fraction, so that clients do not come back in step. */
const JITTER = 0.25;

const GAP_EVENT = "gap";
const BINARY_EVENT = "binary";
const MESSAGE_EVENT = "message";

/** HTTP statuses after which the same request may succeed later. */
const TRANSIENT_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * An incremental parser of `text/event-stream` text.
 *
 * `feed(text)` takes decoded text in chunks of any size and returns the events they
 * complete, each `{type, data, id}` with `data` the event's raw text. `retry` is the
 * last valid `retry:` value (milliseconds) or null; `lastEventId` is the last `id:`.
 * Both outlive `restart()`, as the standard keeps them across reconnections.
 */
export class EventStreamParser {
  retry = null;
  lastEventId = "";
  #buffer = "";
  #data = [];
  #type = "";

  /** Forget a partial line and event: a new connection starts a new stream. */
  restart() {
    this.#buffer = "";
    this.#data = [];
    this.#type = "";
  }

  feed(text) {
    this.#buffer += text;
    const events = [];
    const lineBreak = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = lineBreak.exec(this.#buffer)) !== null) {
      // A CR that ends the text may be the first half of a CRLF: wait for the next chunk.
      if (match[0] === "\r" && match.index === this.#buffer.length - 1) {
        break;
      }
      const event = this.#line(this.#buffer.slice(start, match.index));
      if (event !== null) {
        events.push(event);
      }
      start = lineBreak.lastIndex;
    }
    this.#buffer = this.#buffer.slice(start);
    return events;
  }

  #line(line) {
    if (line === "") {
      return this.#dispatch();
    }
    if (line.startsWith(":")) {
      return null; // A comment: keep-alives.
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "data") {
      this.#data.push(value);
    } else if (field === "event") {
      this.#type = value;
    } else if (field === "id") {
      if (!value.includes("\0")) {
        this.lastEventId = value;
      }
    } else if (field === "retry") {
      if (/^[0-9]+$/.test(value)) {
        this.retry = Number(value);
      }
    }
    return null;
  }

  #dispatch() {
    const data = this.#data;
    const type = this.#type || MESSAGE_EVENT;
    this.#data = [];
    this.#type = "";
    if (data.length === 0) {
      return null;
    }
    return {type, data: data.join("\n"), id: this.lastEventId};
  }
}

/** Return the milliseconds a Retry-After header asks for (seconds or an HTTP date), or null. */
export function parseRetryAfter(value) {
  if (value === null || value.trim() === "") {
    return null;
  }
  if (/^\s*[0-9]+\s*$/.test(value)) {
    return Number(value) * 1000;
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

function decodeBase64(text) {
  return Uint8Array.from(atob(text), (character) => character.charCodeAt(0));
}

/** Call a page's callback; an exception it raises is reported, and the stream goes on. */
function notify(callback, ...args) {
  if (callback === undefined) {
    return;
  }
  try {
    callback(...args);
  } catch (error) {
    reportError(error);
  }
}

function terminalTest(stopOn) {
  if (stopOn === undefined || stopOn === null) {
    return () => false;
  }
  if (typeof stopOn === "function") {
    return stopOn;
  }
  const names = new Set(typeof stopOn === "string" ? [stopOn] : stopOn);
  return (event) => names.has(event.type);
}

/** An HTTP answer the stream will not retry; it closes the stream. */
class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.name = "Refused";
    this.status = status;
  }
}

/** An HTTP answer worth retrying later (TRANSIENT_STATUSES), with its Retry-After if any. */
class Unavailable extends Error {
  constructor(status, retryAfter) {
    super(`HTTP ${status}`);
    this.name = "Unavailable";
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Aborts a connection that has received nothing, keep-alives included, for `timeout` ms. */
class IdleWatchdog {
  #timeout;
  #connection;
  #timer = null;

  constructor(timeout, connection) {
    this.#timeout = timeout;
    this.#connection = connection;
  }

  arm() {
    if (this.#timeout > 0) {
      clearTimeout(this.#timer);
      const silent = new Error(`Nothing received for ${this.#timeout} ms`);
      this.#timer = setTimeout(() => this.#connection.abort(silent), this.#timeout);
    }
  }

  disarm() {
    clearTimeout(this.#timer);
  }
}

/**
 * Follow the event stream at `url` until `close()`, a terminal event or a refusal.
 *
 * Reconnects after the stream ends or fails, sending the last event ID as the
 * `Last-Event-ID` header. See docs/browser.md for the options and the callbacks.
 */
export class BroadcastStream {
  #url;
  #options;
  #isTerminal;
  #parser = new EventStreamParser();
  #abort = new AbortController();
  #timer = null;
  #wake = null;
  #failures = 0;
  #opened = false;
  #state = "connecting";

  constructor(url, options = {}) {
    this.#url = url;
    this.#options = options;
    this.#isTerminal = terminalTest(options.stopOn);
    this.#parser.lastEventId = options.lastEventId ?? "";
    // Callbacks never run inside the constructor, so they may use the stream it returns.
    queueMicrotask(() => this.#run());
  }

  /** "connecting", "open", "waiting" or "closed". */
  get state() {
    return this.#state;
  }

  /** The ID of the last event received: sent as Last-Event-ID when reconnecting. */
  get lastEventId() {
    return this.#parser.lastEventId;
  }

  /** Stop following the stream, at once and for good. Safe to call more than once. */
  close() {
    this.#close({reason: "closed"});
  }

  #close(detail) {
    if (this.#state === "closed") {
      return;
    }
    this.#abort.abort();
    clearTimeout(this.#timer);
    this.#wake?.();
    this.#setState("closed", detail);
  }

  #setState(state, detail = {}) {
    this.#state = state;
    notify(this.#options.onState, state, detail);
  }

  get #retry() {
    return this.#parser.retry ?? this.#options.retry ?? DEFAULT_RETRY_MS;
  }

  /** The wait before the next attempt: the server's retry, doubled per failure, jittered. */
  #backoff() {
    const maxRetry = this.#options.maxRetry ?? DEFAULT_MAX_RETRY_MS;
    const wait = this.#retry * 2 ** (this.#failures - 1) * (1 + JITTER * Math.random());
    return Math.max(this.#retry, Math.min(maxRetry, wait));
  }

  async #run() {
    while (this.#state !== "closed") {
      let detail;
      try {
        await this.#follow();
        this.#failures = 1; // The stream ended: come back after the server's retry.
        detail = {reason: "ended"};
      } catch (error) {
        if (this.#state === "closed") {
          return;
        }
        if (error instanceof Refused) {
          this.#close({reason: "refused", status: error.status, error});
          return;
        }
        this.#failures += 1;
        detail = {reason: "failed", status: error.status ?? null, error};
      }
      if (this.#state === "closed") {
        return; // Closed by a callback, or on a terminal event.
      }
      // A Retry-After is a floor: the backoff still grows while the server stays busy.
      const delay = Math.max(this.#backoff(), detail.error?.retryAfter ?? 0);
      this.#setState("waiting", {...detail, delay});
      await new Promise((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, delay);
      });
    }
  }

  /** Open the stream and read it to its end; throws if it cannot open or breaks. */
  async #follow() {
    this.#setState("connecting", {reconnect: this.#opened});
    const url = typeof this.#url === "function" ? await this.#url() : this.#url;
    const headers = {Accept: "text/event-stream"};
    if (this.lastEventId !== "") {
      headers["Last-Event-ID"] = this.lastEventId;
    }
    // Aborted by close(), or by the idle watchdog for this connection only.
    const connection = new AbortController();
    const abort = () => connection.abort(this.#abort.signal.reason);
    this.#abort.signal.addEventListener("abort", abort);
    const watchdog = new IdleWatchdog(this.#options.idleTimeout, connection);
    try {
      watchdog.arm();
      const response = await fetch(url, {
        headers,
        credentials: this.#options.credentials ?? "same-origin",
        cache: "no-store",
        signal: connection.signal,
      });
      await this.#check(response);
      this.#failures = 0;
      this.#parser.restart();
      this.#setState("open", {reconnect: this.#opened});
      this.#opened = true;
      await this.#read(response, watchdog);
    } finally {
      watchdog.disarm();
      this.#abort.signal.removeEventListener("abort", abort);
    }
  }

  /** Throw unless `response` is an event stream: Unavailable to retry, Refused to stop. */
  async #check(response) {
    const type = (response.headers.get("Content-Type") ?? "").toLowerCase();
    if (response.ok && response.status !== 204 && type.startsWith("text/event-stream")) {
      return;
    }
    await response.body?.cancel().catch(() => {});
    if (TRANSIENT_STATUSES.has(response.status)) {
      const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
      throw new Unavailable(response.status, retryAfter);
    }
    if (!response.ok) {
      throw new Refused(response.status, `HTTP ${response.status} ${response.statusText}`);
    }
    throw new Refused(response.status, `Not an event stream (${response.status}, "${type}")`);
  }

  async #read(response, watchdog) {
    // The decoder drops a byte order mark and replaces invalid UTF-8, as the standard says.
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done || this.#state === "closed") {
          return;
        }
        watchdog.arm();
        for (const event of this.#parser.feed(value)) {
          this.#dispatch(event);
          if (this.#state === "closed") {
            return;
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  #dispatch({type, data: text, id}) {
    if (type === GAP_EVENT) {
      notify(this.#options.onGap);
      return;
    }
    let data = text;
    if (type === BINARY_EVENT) {
      data = decodeBase64(text);
    } else if (type !== MESSAGE_EVENT) {
      try {
        data = JSON.parse(text);
      } catch (error) {
        reportError(new SyntaxError(`Event "${type}" does not carry JSON: ${error.message}`));
        return;
      }
    }
    const event = {type, data, text, id};
    notify(this.#options.onEvent, event);
    if (this.#state !== "closed" && this.#isTerminalEvent(event)) {
      this.#close({reason: "terminal", event});
    }
  }

  #isTerminalEvent(event) {
    try {
      return this.#isTerminal(event) === true;
    } catch (error) {
      reportError(error);
      return false;
    }
  }
}
