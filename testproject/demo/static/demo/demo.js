// The demo page: follows jobs and the chat topic with broadcast_app's broadcast.js.
import {BroadcastStream} from "../broadcast_app/broadcast.js";

const page = document.body.dataset;
const MAX_LOG_LINES = 50;
const MAX_JOB_ROWS = 4;
const WORKER_HINT_MS = Number(page.workerHintSeconds) * 1000;
const IDLE_TIMEOUT_MS = Number(page.idleTimeoutMs);

/** POST to a demo endpoint; resolves to its JSON body, rejects with its error message. */
async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"X-CSRFToken": page.csrfToken},
    body,
    credentials: "same-origin",
  });
  const type = response.headers.get("Content-Type") ?? "";
  const data = type.startsWith("application/json") ? await response.json() : {};
  if (!response.ok) {
    throw new Error(data.error || `HTTP ${response.status}`);
  }
  return data;
}

/** Show a stream's state (see BroadcastStream's onState) in a status badge. */
function showState(element, state, detail) {
  let text = {connecting: "connecting…", open: "live"}[state];
  if (state === "waiting") {
    const seconds = Math.ceil(detail.delay / 1000);
    const why = detail.status === 503 ? "server busy" : "reconnecting";
    text = `${why}, retry in ${seconds} s…`;
  } else if (state === "closed") {
    const refused = `refused (HTTP ${detail.status}): reload the page`;
    text = detail.reason === "refused" ? refused : "closed";
  }
  element.dataset.state = state;
  element.textContent = text;
}

/** Add a line at the top of a log list, keeping the last MAX_LOG_LINES; return it. */
function addLine(list, text, kind = "") {
  const item = document.createElement("li");
  const time = document.createElement("time");
  const message = document.createElement("span");
  time.textContent = new Date().toLocaleTimeString();
  message.textContent = text; // Text nodes: messages are never parsed as HTML.
  item.append(time, " ", message);
  item.className = kind;
  list.prepend(item);
  while (list.children.length > MAX_LOG_LINES) {
    list.lastElementChild.remove();
  }
  return item;
}

function setLine(item, text, kind = "") {
  item.querySelector("span").textContent = text;
  item.className = kind;
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
  const hint = row.querySelector(".job-hint");
  const label = `[${job.id.slice(0, 8)}]`;
  let hintTimer = null;
  let taken = false; // Whether an event of the job has arrived: someone runs it.

  function start() {
    // The line is written before the request: events may arrive before its answer.
    const line = addLine(jobLog, `${label} queueing…`);
    post(job.start)
      .then(() => {
        setLine(line, `${label} queued`);
        if (WORKER_HINT_MS > 0 && !taken) {
          hintTimer = setTimeout(() => (hint.hidden = false), WORKER_HINT_MS);
        }
      })
      .catch((error) => {
        stream.close();
        status.dataset.state = "failed";
        status.textContent = "failed";
        setLine(line, `${label} not started: ${error.message}`, "error");
      });
  }

  const stream = new BroadcastStream(job.stream, {
    onState(state, detail) {
      if (state === "closed" && detail.reason === "terminal") {
        status.dataset.state = "done";
        status.textContent = "done";
        return;
      }
      showState(status, state, detail);
      if (state === "open" && !detail.reconnect) {
        start();
      } else if (state === "open") {
        const lost = page.replay ? "resumed after the last event" : "events sent meanwhile are lost";
        addLine(jobLog, `${label} reconnected; ${lost}`, "warning");
      }
    },
    // The job sends JSON "progress" events, then "done"; broadcast.js parses them.
    onEvent(event) {
      if (event.type !== "progress" && event.type !== "done") {
        // Anyone with Redis access can publish here, e.g. with manage.py publish_topic.
        addLine(jobLog, `${label} ${event.type}: ${event.text}`, "warning");
        return;
      }
      const report = event.data;
      taken = true;
      clearTimeout(hintTimer);
      hint.hidden = true;
      bar.value = report.percent;
      percent.textContent = `${report.percent}%`;
      addLine(jobLog, `${label} ${report.percent}% ${report.message}`);
    },
    onGap: () => addLine(jobLog, `${label} some events were missed`, "warning"),
    stopOn: "done",
    idleTimeout: IDLE_TIMEOUT_MS,
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

function chatLine(event) {
  if (event.type === "message") {
    return [event.text, ""];
  }
  if (event.type === "binary") {
    return [`(${event.data.length} bytes of binary data)`, "warning"];
  }
  return [`${event.type}: ${event.text}`, ""];
}

new BroadcastStream(page.chatStream, {
  onState: (state, detail) => showState(chatStatus, state, detail),
  onEvent: (event) => addLine(chatList, ...chatLine(event)),
  onGap: () => addLine(chatList, "(some messages were missed)", "warning"),
  idleTimeout: IDLE_TIMEOUT_MS,
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
