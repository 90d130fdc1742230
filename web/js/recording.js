// The playback page of a recorded lesson: /r/{recording_id}#token=<JWT>.
//
// The token arrives in the link's fragment (never sent to the server, moved to
// sessionStorage and out of the address bar, as in the classroom). The page
// asks GET /api/recordings/{id} for the recording and signed media URLs, plays
// the teacher's camera, the shared screen and the sound in sync
// (recording-player.js), shows the chat as it was written
// (recording-chat.js) and the downloads (recording-downloads.js), and reports
// what was watched to POST /api/recordings/{id}/viewed every 30 s and when the
// page is left, so that asynchronous study counts in the digital footprint.

import { dateTime } from "./admin-format.js";
import { byId } from "./dom.js";
import { bindLanguageSelect, initI18n, setText, t } from "./i18n.js";
import { RecordingChat, fetchChat } from "./recording-chat.js";
import { Downloads } from "./recording-downloads.js";
import { Player } from "./recording-player.js";
import { WatchTracker, buildLanes, formatClock, timelineLength } from "./recording-timeline.js";
import { takeToken } from "./token.js";

const REPORT_MS = 30_000;
// Signed media URLs live 10 minutes; fresh ones are fetched before that.
const URL_REFRESH_MS = 8 * 60_000;
const SPEEDS = [0.75, 1, 1.25, 1.5, 2];
const STEP_S = 5;
const ERROR_KEYS = { 401: "unauthorized", 403: "forbidden", 404: "not_found" };

const state = {
  rid: null,
  token: null,
  recording: null,
  player: null,
  tracker: new WatchTracker(),
  reported: [], // what was sent, for tests and debugging
  dragging: false,
  cameraBig: false,
  refreshing: null,
  refreshes: 0, // GET /api/recordings/{id} made, for tests and debugging
};
window.sabaq = { state };

function recordingIdFromLocation() {
  const match = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (match) {
    try {
      return decodeURIComponent(match[1]);
    } catch {
      return null;
    }
  }
  return new URLSearchParams(location.search).get("recording");
}

function showView(name) {
  for (const view of document.querySelectorAll("[data-view]")) {
    view.hidden = view.dataset.view !== name;
  }
}

function notice(text) {
  const banner = byId("notice");
  banner.textContent = text;
  banner.hidden = false;
}

class HttpError extends Error {
  constructor(status) {
    super(`HTTP ${status}`);
    this.status = status;
  }
}

async function loadRecording() {
  let response;
  try {
    response = await fetch(`/api/recordings/${encodeURIComponent(state.rid)}`, {
      headers: { Authorization: `Bearer ${state.token}` },
      cache: "no-store",
    });
  } catch {
    throw new HttpError(0);
  }
  if (!response.ok) {
    throw new HttpError(response.status);
  }
  return response.json();
}

// One refresh at a time: a media error on three elements asks once.
function refresh() {
  if (!state.refreshing) {
    state.refreshes += 1;
    state.refreshing = loadRecording().finally(() => {
      state.refreshing = null;
    });
  }
  return state.refreshing.then((recording) => {
    state.recording = recording;
    if (state.player) {
      // The page is up: the status may have moved on (finalizing → ready), URLs are new.
      renderHeader(recording);
      state.player.updateUrls(recording.parts || []);
      state.downloads?.render(recording);
    }
    return recording;
  });
}

function showError(status) {
  const name = ERROR_KEYS[status] || "network";
  setText(byId("error-title"), `recordings.error.${name}_title`);
  setText(byId("error-text"), `recordings.error.${name}_text`);
  showView("error");
}

function renderHeader(recording) {
  const lesson = recording.lesson || {};
  byId("rec-title").textContent = lesson.title || "";
  document.title = `${lesson.title || ""} · ${t("recordings.page_title")}`;
  const date = dateTime(recording.started_at);
  const total = formatClock(timelineLength(recording, buildLanes(recording)));
  setText(byId("rec-when"), "recordings.recorded_on", { date, course: lesson.course || "", duration: total });
  const status = byId("rec-status");
  status.dataset.status = recording.status;
  setText(status, `recordings.status.${recording.status}`, { reason: recording.reason || "—" });
}

// --- the player and its controls --------------------------------------------------------------

function arrangeStage(layout) {
  const stage = byId("rec-stage");
  const camera = byId("rec-camera");
  const screen = byId("rec-screen");
  camera.hidden = !layout.camera;
  screen.hidden = !layout.screen;
  byId("rec-novideo").hidden = layout.camera || layout.screen;
  let mode = "none";
  if (layout.screen && layout.camera) {
    mode = state.cameraBig ? "camera-big" : "screen";
  } else if (layout.screen) {
    mode = "screen-only";
  } else if (layout.camera) {
    mode = "camera";
  }
  stage.dataset.layout = mode;
  byId("rec-swap").hidden = !(layout.screen && layout.camera);
}

function showTime(position, length) {
  const seek = byId("rec-seek");
  if (!state.dragging) {
    seek.value = String(position);
  }
  const args = { time: formatClock(position), total: formatClock(length) };
  seek.setAttribute("aria-valuetext", t("recordings.seek_value", args));
  byId("rec-time").textContent = `${args.time} / ${args.total}`;
}

function showPlaying(playing) {
  const button = byId("rec-play");
  setText(byId("rec-play-label"), playing ? "recordings.pause" : "recordings.play");
  button.dataset.playing = String(playing);
}

function setSpeed(value) {
  const player = state.player;
  player.setRate(value);
  byId("rec-speed").value = String(value);
}

function stepSpeed(direction) {
  const index = SPEEDS.indexOf(state.player.rate);
  const next = SPEEDS[Math.min(SPEEDS.length - 1, Math.max(0, (index < 0 ? 1 : index) + direction))];
  setSpeed(next);
}

function onKey(event) {
  const player = state.player;
  const target = event.target;
  const tag = target && target.tagName;
  if (event.altKey || event.ctrlKey || event.metaKey || tag === "SELECT" || tag === "TEXTAREA") {
    return;
  }
  // Buttons click on Space by themselves; the scrubber moves on arrows by itself.
  const native =
    (tag === "BUTTON" && (event.key === " " || event.key === "Enter")) ||
    (tag === "INPUT" && event.key !== " ") ||
    tag === "A";
  if (native) {
    return;
  }
  const actions = {
    " ": () => player.toggle(),
    k: () => player.toggle(),
    ArrowLeft: () => player.seek(player.position - STEP_S),
    ArrowRight: () => player.seek(player.position + STEP_S),
    j: () => player.seek(player.position - 2 * STEP_S),
    l: () => player.seek(player.position + 2 * STEP_S),
    Home: () => player.seek(0),
    End: () => player.seek(player.length),
    ">": () => stepSpeed(1),
    "<": () => stepSpeed(-1),
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

function setupPlayer(recording) {
  const lanes = buildLanes(recording);
  const length = timelineLength(recording, lanes);
  const player = new Player({
    lanes,
    length,
    elements: { camera: byId("rec-camera"), screen: byId("rec-screen"), audio: byId("rec-audio") },
    audioHost: byId("rec-voices"),
  });
  state.player = player;
  if (!player.hasMedia || length <= 0) {
    byId("rec-nothing").hidden = false;
    byId("rec-controls").hidden = true;
  }
  const seek = byId("rec-seek");
  seek.max = String(length);
  player.addEventListener("layout", (event) => arrangeStage(event.detail));
  player.addEventListener("time", (event) => {
    const { position, playing, stalled } = event.detail;
    showTime(position, length);
    state.chat?.update(position);
    byId("rec-buffering").hidden = !(playing && stalled);
    if (playing && !stalled) {
      state.tracker.observe(position, performance.now(), player.rate);
    } else {
      state.tracker.close();
    }
  });
  player.addEventListener("seeking", () => state.tracker.close());
  player.addEventListener("state", (event) => showPlaying(event.detail.playing));
  player.addEventListener("ended", () => showPlaying(false));
  player.addEventListener("blocked", () => notice(t("recordings.sound_blocked")));
  player.addEventListener("broken", () => notice(t("recordings.media_error")));
  player.addEventListener("mediaerror", () => {
    refresh().catch(() => notice(t("recordings.media_error")));
  });

  byId("rec-play").addEventListener("click", () => player.toggle());
  byId("rec-back").addEventListener("click", () => player.seek(player.position - 2 * STEP_S));
  byId("rec-forward").addEventListener("click", () => player.seek(player.position + 2 * STEP_S));
  seek.addEventListener("pointerdown", () => {
    state.dragging = true;
  });
  seek.addEventListener("pointerup", () => {
    state.dragging = false;
  });
  seek.addEventListener("input", () => player.seek(Number(seek.value)));
  const speed = byId("rec-speed");
  speed.addEventListener("change", () => setSpeed(Number(speed.value)));
  byId("rec-swap").addEventListener("click", () => {
    state.cameraBig = !state.cameraBig;
    byId("rec-swap").setAttribute("aria-pressed", String(state.cameraBig));
    arrangeStage(player.lastLayout || { camera: false, screen: false });
  });
  document.addEventListener("keydown", onKey);
  showPlaying(false);
  showTime(0, length);
}

// --- what was watched ----------------------------------------------------------------------------

function report() {
  const intervals = state.tracker.take();
  if (intervals.length === 0) {
    return;
  }
  state.reported.push(...intervals);
  // keepalive: the request outlives the page when it is being left (pagehide).
  fetch(`/api/recordings/${encodeURIComponent(state.rid)}/viewed`, {
    method: "POST",
    keepalive: true,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ intervals }),
  })
    .then((response) => {
      // A refusal (4xx) would be refused again; a server in trouble may take it later.
      if (response.status >= 500) {
        state.tracker.restore(intervals);
      }
    })
    .catch(() => state.tracker.restore(intervals));
}

function setupReports() {
  setInterval(() => report(), REPORT_MS);
  addEventListener("pagehide", () => {
    state.tracker.close();
    report();
  });
  // Phones often never fire pagehide: hiding the tab is the last sure moment.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      report();
    }
  });
}

// --- start ---------------------------------------------------------------------------------------

async function setupChat(recording) {
  const chat = new RecordingChat({
    list: byId("rec-chat"),
    status: byId("rec-chat-status"),
    onSeek: (at) => state.player?.seek(at),
  });
  state.chat = chat;
  try {
    chat.load(await fetchChat(recording.id, state.token), recording.started_at);
  } catch {
    chat.unavailable();
  }
}

async function main() {
  await initI18n();
  bindLanguageSelect(byId("language"));
  state.rid = recordingIdFromLocation();
  state.token = state.rid ? takeToken(`recording:${state.rid}`) : null;
  if (!state.rid || !state.token) {
    showView("notoken");
    return;
  }
  let recording;
  try {
    recording = await refresh();
  } catch (error) {
    showError(error.status);
    return;
  }
  renderHeader(recording);
  showView("player");
  setupPlayer(recording);
  const downloads = new Downloads({
    composite: byId("rec-download-composite"),
    parts: byId("rec-parts"),
    refresh,
    notice,
  });
  downloads.render(recording);
  state.downloads = downloads;
  window.addEventListener("sabaq:language", () => {
    renderHeader(state.recording);
    downloads.render(state.recording);
  });
  setupReports();
  setInterval(() => {
    refresh().catch(() => {});
  }, URL_REFRESH_MS);
  await setupChat(recording);
}

main().catch((error) => {
  console.error("sabaq: the recording page failed", error);
  showError(0);
});
