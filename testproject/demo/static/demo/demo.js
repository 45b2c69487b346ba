"use strict";
// The demo page: follows jobs and the chat topic through the stream view with EventSource.

const page = document.body.dataset;
const RETRY_MS = 3000;
const MAX_RETRY_MS = 30000;
const MAX_LOG_LINES = 50;
const MAX_JOB_ROWS = 4;

/** POST to a demo endpoint; resolves to its JSON body, rejects with its error message. */
async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"X-CSRFToken": page.csrfToken},
    body,
    credentials: "same-origin",
  });
  const data = response.status === 204 ? {} : await response.json();
  if (!response.ok) {
    throw new Error(data.error || `HTTP ${response.status}`);
  }
  return data;
}

/**
 * Follow the event stream at `url` until `close()`.
 *
 * EventSource reconnects by itself when a connection drops (server restart, network);
 * after an error status such as 503 it gives up, so a new one is opened with backoff.
 * Callbacks: onStatus(state, text); onOpen(reconnected); onMessage(text);
 * onBinary(bytes); onGap() when messages may have been missed.
 */
function follow(url, {onStatus, onOpen = () => {}, onMessage, onBinary = () => {}, onGap}) {
  let source = null;
  let closed = false;
  let opened = false;
  let timer = null;
  let delay = RETRY_MS;

  function connect() {
    source = new EventSource(url);
    source.onopen = () => {
      delay = RETRY_MS;
      onStatus("live", "live");
      onOpen(opened);
      opened = true;
    };
    source.onmessage = (event) => onMessage(event.data);
    source.addEventListener("binary", (event) => {
      onBinary(Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0)));
    });
    source.addEventListener("gap", () => onGap());
    source.onerror = () => {
      if (closed) {
        return;
      }
      onStatus("reconnecting", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    };
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source.close();
    },
  };
}

function showStatus(element, state, text) {
  element.dataset.state = state;
  element.textContent = text;
}

/** Add a line at the top of a log list, keeping the last MAX_LOG_LINES. */
function addLine(list, text, kind = "") {
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, " ", text);  // Text nodes: messages are never parsed as HTML.
  item.className = kind;
  list.prepend(item);
  while (list.children.length > MAX_LOG_LINES) {
    list.lastElementChild.remove();
  }
}

// -- Jobs ------------------------------------------------------------------------------

const jobs = document.getElementById("jobs");
const jobLog = document.getElementById("job-log");
const startButton = document.getElementById("start-job");

function addJobRow(job) {
  const row = document.getElementById("job-row").content.firstElementChild.cloneNode(true);
  row.dataset.job = job.id;
  row.querySelector(".job-topic").textContent = job.topic;
  row.querySelector(".job-topic").title = `python manage.py tail_topic ${job.topic}`;
  jobs.prepend(row);
  while (jobs.children.length > MAX_JOB_ROWS) {
    jobs.lastElementChild.remove();
  }
  return row;
}

/** Show a job's events; start it once its stream is live, so its first event is seen. */
function followJob(job) {
  const row = addJobRow(job);
  const bar = row.querySelector("progress");
  const percent = row.querySelector(".percent");
  const status = row.querySelector(".status");
  const label = `[${job.id.slice(0, 8)}]`;

  const stream = follow(job.stream, {
    onStatus: (state, text) => showStatus(status, state, text),
    onOpen(reconnected) {
      if (reconnected) {
        addLine(jobLog, `${label} reconnected; events sent meanwhile are lost`, "warning");
        return;
      }
      post(job.start)
        .then(() => addLine(jobLog, `${label} queued`))
        .catch((error) => {
          stream.close();
          showStatus(status, "failed", "failed");
          addLine(jobLog, `${label} not started: ${error.message}`, "error");
        });
    },
    onMessage(text) {
      let event;
      try {
        event = JSON.parse(text);
      } catch {
        // Anyone with Redis access can publish here, e.g. with manage.py publish_topic.
        addLine(jobLog, `${label} ${text}`, "warning");
        return;
      }
      bar.value = event.percent;
      percent.textContent = `${event.percent}%`;
      addLine(jobLog, `${label} ${event.percent}% ${event.message}`);
      if (event.done) {
        stream.close();
        showStatus(status, "done", "done");
        row.classList.add("done");
      }
    },
    onGap: () => addLine(jobLog, `${label} some events were missed`, "warning"),
  });
}

startButton.addEventListener("click", async () => {
  // One creation at a time: each response carries the session cookie that lists the jobs.
  startButton.disabled = true;
  try {
    followJob(await post(page.newJobUrl));
  } catch (error) {
    addLine(jobLog, `Could not create a job: ${error.message}`, "error");
  } finally {
    startButton.disabled = false;
  }
});

// -- Chat ------------------------------------------------------------------------------

const chatList = document.getElementById("chat-list");
const chatForm = document.getElementById("chat-form");
const chatInput = document.getElementById("chat-message");
const chatStatus = document.getElementById("chat-status");

follow(page.chatStream, {
  onStatus: (state, text) => showStatus(chatStatus, state, text),
  onMessage: (text) => addLine(chatList, text),
  onBinary: (bytes) => addLine(chatList, `(${bytes.length} bytes of binary data)`, "warning"),
  onGap: () => addLine(chatList, "(some messages were missed)", "warning"),
});

chatForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await post(page.chatUrl, new URLSearchParams(new FormData(chatForm)));
    chatInput.value = "";
  } catch (error) {
    addLine(chatList, `Not published: ${error.message}`, "error");
  }
});
