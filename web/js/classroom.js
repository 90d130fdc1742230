// The lesson page (lesson.html): join / device check, lobby, classroom, end screens.
//
// URL options: ?autojoin=1 skips the device check and joins at once; with
// ?nocam=1 no camera or microphone is requested (receive only at first);
// ?lang=kk|ru|en picks the language. Tests read window.sabaq.state and drive
// the page through data-testid hooks.

import { ChatPanel } from "./chat.js";
import { DeviceCheck, getCamera, getCameraAndMicrophone, getMicrophone, getScreen, mediaAvailable, mediaErrorCode } from "./devices.js";
import { byId, setPressed } from "./dom.js";
import { bindLanguageSelect, closeKey, errorKey, hasKey, initI18n, setText, setTitle, t } from "./i18n.js";
import { LobbyList, ParticipantList, roleKey } from "./people.js";
import { LessonClient, ProtocolError, canPublish, isModerator } from "./protocol.js";
import { Stage } from "./stage.js";
import { lessonIdFromLocation, takeToken, tokenClaims } from "./token.js";

const params = new URLSearchParams(location.search);
const AUTOJOIN = params.get("autojoin") === "1";
const NOCAM = params.get("nocam") === "1";

// Close codes after which joining again may work (the others need a new link
// or a moderator's decision).
const REJOINABLE = [1000, 1002, 1003, 1009, 4000, 4409, 4429];
const CONNECTION_KEYS = {
  idle: "connection.idle",
  connecting: "connection.connecting",
  connected: "connection.connected",
  reconnecting: "connection.reconnecting",
  closed: "connection.closed",
};
const ANNOUNCE_KEEP_MS = 15000;
const JOIN_ANNOUNCE_DELAY_MS = 1500;

const ui = {
  view: "loading",
  lessonId: null,
  token: null,
  claims: null,
  role: null,
  client: null,
  check: null,
  pendingTracks: null,
  busy: new Set(),
  joinedNames: [],
  joinTimer: 0,
  lobbyIds: new Set(),
  noticeTimer: 0,
};

// For tests and curious developers: the client and a JSON view of the state.
window.sabaq = {
  client: null,
  get state() {
    return {
      view: ui.view,
      lessonId: ui.lessonId,
      role: ui.role,
      ...(ui.client ? ui.client.snapshot() : {}),
    };
  },
};

let stage;
let people;
let lobbyList;
let chat;

// --- small UI helpers -----------------------------------------------------------

function showView(name) {
  ui.view = name;
  for (const view of document.querySelectorAll("main > .view")) {
    view.hidden = view.dataset.view !== name;
  }
  document.body.dataset.view = name;
  // Screen readers follow the change: focus moves to the new view's heading.
  const heading = document.querySelector(`main > [data-view="${name}"] h1`);
  if (heading && name !== "classroom") {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

// Sets a translated text, or clears it (key null).
function setOrClear(element, key, args) {
  if (key) {
    setText(element, key, args);
  } else {
    delete element.dataset.i18n;
    element.textContent = "";
  }
}

// A message under the controls (errors, refusals), replaced by the next one.
function hint(key, args) {
  setOrClear(byId("control-hint"), key, args);
}

function hintError(error) {
  const code = error instanceof ProtocolError ? error.code : mediaErrorCode(error);
  hint(errorKey(code));
}

const NOTICE_MS = 12000;

// A banner across the page for things that concern the whole lesson; it
// goes away by itself (the announcer keeps the words for screen readers).
function notice(key, args) {
  const element = byId("notice");
  setText(element, key, args);
  element.hidden = false;
  clearTimeout(ui.noticeTimer);
  ui.noticeTimer = setTimeout(() => {
    element.hidden = true;
  }, NOTICE_MS);
}

function announce(text) {
  const announcer = byId("announcer");
  const line = document.createElement("p");
  line.textContent = text;
  announcer.append(line);
  setTimeout(() => line.remove(), ANNOUNCE_KEEP_MS);
}

// Joins are batched: a class of 200 arriving at 9:00 is one sentence, not 200.
function announceJoin(name) {
  ui.joinedNames.push(name);
  clearTimeout(ui.joinTimer);
  ui.joinTimer = setTimeout(() => {
    const names = ui.joinedNames;
    ui.joinedNames = [];
    if (names.length > 3) {
      announce(t("announce.many_joined", { count: names.length }));
    } else {
      for (const joined of names) {
        announce(t("announce.joined", { name: joined }));
      }
    }
  }, JOIN_ANNOUNCE_DELAY_MS);
}

function setLessonTitle(title) {
  const text = title || ui.lessonId;
  byId("lesson-title").textContent = text;
  const titleElement = document.querySelector("title");
  delete titleElement.dataset.i18n;
  titleElement.textContent = `${text} · Sabaq`;
}

// A modal yes/no question; Escape and Cancel answer no.
function confirmDialog({ title, text, ok }) {
  const dialog = byId("confirm-dialog");
  if (typeof dialog.showModal !== "function") {
    return Promise.resolve(window.confirm(`${title}\n\n${text}`));
  }
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-ok").textContent = ok;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// --- before joining ---------------------------------------------------------------

async function loadLessonTitle() {
  setLessonTitle(null);
  try {
    const response = await fetch(`/api/lessons/${encodeURIComponent(ui.lessonId)}`, {
      headers: { Authorization: `Bearer ${ui.token}` },
      cache: "no-store",
    });
    if (response.ok) {
      const lesson = await response.json();
      if (lesson && lesson.title) {
        setLessonTitle(lesson.title);
      }
    }
  } catch {
    // the id stays as the title; the lesson itself may still work
  }
}

function publishes(role) {
  return isModerator(role);
}

function showCheck() {
  const publisher = publishes(ui.role);
  byId("check-name").textContent = (ui.claims && (ui.claims.name || ui.claims.sub)) || "";
  setText(byId("check-role"), roleKey(ui.role));
  setText(byId("check-intro"), publisher ? "check.intro_publisher" : "check.intro_student");
  // Students join to watch: checking devices is offered, not required.
  byId("check-start").hidden = publisher;
  byId("check-fields").hidden = !publisher;
  byId("check-toggles").hidden = !publisher;
  byId("check-note").hidden = publisher;
  byId("preview-box").hidden = !publisher;
  ui.check = new DeviceCheck({
    video: byId("check-preview"),
    cameraSelect: byId("camera-select"),
    microphoneSelect: byId("microphone-select"),
    meter: byId("mic-level"),
    status: byId("check-status"),
  });
  byId("check-start").addEventListener("click", () => {
    byId("check-start").hidden = true;
    byId("check-fields").hidden = false;
    byId("preview-box").hidden = false;
    ui.check.start();
  });
  byId("join").addEventListener("click", () => {
    byId("join").disabled = true;
    let tracks = {};
    if (publisher) {
      tracks = ui.check.take({
        camera: !byId("join-camera-off").checked,
        microphone: !byId("join-mic-off").checked,
      });
    } else {
      ui.check.stop();
    }
    join(tracks);
  });
  showView("check");
  if (publisher && !NOCAM) {
    ui.check.start();
  }
}

async function autojoin() {
  let tracks = {};
  if (publishes(ui.role) && !NOCAM && mediaAvailable()) {
    try {
      tracks = await getCameraAndMicrophone();
    } catch (error) {
      notice(errorKey(mediaErrorCode(error)));
    }
  }
  join(tracks);
}

// --- the lesson --------------------------------------------------------------------

function join(tracks) {
  ui.pendingTracks = tracks;
  const client = new LessonClient({ lessonId: ui.lessonId, token: ui.token });
  ui.client = client;
  window.sabaq.client = client;
  wire(client);
  setText(byId("view-loading").querySelector("p"), "connection.connecting");
  showView("loading");
  client.connect();
}

function wire(client) {
  client.addEventListener("state", (event) => onState(event.detail));
  client.addEventListener("welcome", (event) => onWelcome(event.detail));
  client.addEventListener("lobby", () => {
    showView("lobby");
    renderControls();
  });
  client.addEventListener("participants", (event) => onParticipants(event.detail));
  client.addEventListener("lobbychanged", (event) => onLobbyChanged(event.detail.lobby));
  client.addEventListener("chat", (event) => chat.add(event.detail.message));
  client.addEventListener("floor", (event) => onFloor(event.detail));
  client.addEventListener("muted", (event) => {
    const key = event.detail.source === "camera" ? "announce.camera_muted_by" : "announce.mic_muted_by";
    notice(key, { name: event.detail.by || "" });
    announce(t(key, { name: event.detail.by || "" }));
    renderControls();
  });
  client.addEventListener("quality", (event) => showQuality(event.detail.level));
  client.addEventListener("recording", (event) => {
    showRecording(event.detail.active);
    renderControls();
  });
  client.addEventListener("track", (event) => stage.addRemote(event.detail));
  client.addEventListener("trackended", (event) => stage.removeRemote(event.detail));
  client.addEventListener("local", () => {
    stage.setLocal("camera", client.localTrack("camera"));
    stage.setLocal("screen", client.localTrack("screen"));
    renderControls();
  });
  client.addEventListener("error", (event) => hint(errorKey(event.detail.code)));
}

function onState(detail) {
  const element = byId("connection-state");
  element.dataset.state = detail.state;
  setText(element, CONNECTION_KEYS[detail.state] || "connection.idle");
  const banner = byId("reconnecting-banner");
  banner.hidden = detail.state !== "reconnecting";
  if (detail.state === "reconnecting" && detail.delay) {
    setText(byId("reconnecting-text"), "connection.reconnecting_in", {
      seconds: Math.round(detail.delay / 1000),
    });
  }
  if (detail.state === "closed") {
    showEnded(detail.code);
  }
  renderControls();
}

function onWelcome(detail) {
  const client = ui.client;
  byId("notice").hidden = true;
  if (detail.lesson && detail.lesson.title) {
    setLessonTitle(detail.lesson.title);
  }
  chat.reset(detail.chat || [], detail.you && detail.you.id);
  chat.setAllowed(detail.you && detail.you.role !== "observer");
  showView("classroom");
  showRecording(detail.recording, { quiet: true });
  publishPending(client);
  renderControls();
}

// The tracks chosen before joining, published once the server knows us.
function publishPending(client) {
  const tracks = ui.pendingTracks;
  ui.pendingTracks = null;
  if (!tracks) {
    return;
  }
  const allowed = {};
  for (const [source, track] of Object.entries(tracks)) {
    if (track && canPublish(client.state.you, source)) {
      allowed[source] = track;
    } else if (track) {
      track.stop();
    }
  }
  if (Object.keys(allowed).length > 0) {
    client.publish(allowed).catch(hintError);
  }
}

function onParticipants({ participants, change }) {
  const you = ui.client.state.you;
  const p = change.participant;
  // `updated` arrives several times a second while people speak: only that row changes.
  people.render(participants, you, change.kind === "updated" && p ? p.id : null);
  stage.setParticipants(participants, you);
  if (change.kind === "joined" && p && (!you || p.id !== you.id)) {
    announceJoin(p.name);
  } else if (change.kind === "left" && p && p.name) {
    const key = `announce.left.${change.reason}`;
    announce(t(hasKey(key) ? key : "announce.left.left", { name: p.name }));
  } else if (change.kind === "updated" && p && p.hand && !(change.previous && change.previous.hand)) {
    announce(t("announce.hand", { name: p.name }));
  }
  renderControls();
}

function onLobbyChanged(lobby) {
  const you = ui.client.state.you;
  lobbyList.render(lobby, you);
  if (you && isModerator(you.role)) {
    for (const entry of lobby) {
      if (!ui.lobbyIds.has(entry.id)) {
        announce(t("announce.waiting", { name: entry.name }));
      }
    }
  }
  ui.lobbyIds = new Set(lobby.map((entry) => entry.id));
}

function onFloor({ sources, by }) {
  let key = "announce.floor_taken";
  if (sources.includes("camera")) {
    key = "announce.floor_av";
  } else if (sources.includes("microphone")) {
    key = "announce.floor_mic";
  } else if (sources.includes("screen")) {
    key = "announce.floor_screen";
  }
  notice(key, { name: by || "" });
  announce(t(key, { name: by || "" }));
  renderControls();
}

function showQuality(level) {
  const element = byId("quality");
  if (!level) {
    element.hidden = true;
    return;
  }
  element.hidden = false;
  element.dataset.level = level;
  setText(element, `quality.${level}`);
}

function showRecording(active, { quiet = false } = {}) {
  const badge = byId("recording-badge");
  const was = !badge.hidden;
  badge.hidden = !active;
  if (!quiet && was !== Boolean(active)) {
    announce(t(active ? "announce.recording_on" : "announce.recording_off"));
  }
}

function showEnded(code) {
  const view = byId("view-ended");
  view.dataset.code = String(code);
  setText(byId("ended-title"), closeKey(code, "title"));
  setText(byId("ended-text"), closeKey(code, "text"));
  byId("rejoin").hidden = !REJOINABLE.includes(code);
  setText(byId("rejoin"), code === 4409 ? "ended.use_here" : "ended.rejoin");
  // Nothing of the lesson is live any more: no REC, no quality, no banners.
  for (const id of ["reconnecting-banner", "sound-banner", "recording-badge", "quality", "notice"]) {
    byId(id).hidden = true;
  }
  stage.clearRemote();
  if (ui.check) {
    ui.check.stop();
  }
  showView("ended");
}

// --- controls -------------------------------------------------------------------------

function renderControls() {
  const client = ui.client;
  const you = client ? client.state.you : null;
  const inLesson = Boolean(client && client.state.connection === "connected" && !client.state.waiting && you);
  const published = client ? client.published() : {};
  for (const [source, id] of [
    ["microphone", "mic"],
    ["camera", "camera"],
  ]) {
    const button = byId(id);
    const allowed = inLesson && canPublish(you, source);
    const state = published[source] || "off";
    button.disabled = !allowed || ui.busy.has(source);
    button.dataset.state = state;
    setPressed(button, state === "on");
    setText(button.querySelector(".toggle-state"), state === "on" ? "controls.on" : "controls.off");
    if (allowed || !you) {
      button.removeAttribute("title");
    } else {
      setTitle(button, "controls.need_floor");
    }
  }
  const hand = byId("hand");
  hand.hidden = !you || you.role !== "student";
  hand.disabled = !inLesson;
  setPressed(hand, Boolean(you && you.hand));
  // The label stays "Raise hand" (aria-pressed says whether it is up); a tick shows it.
  hand.querySelector(".toggle-state").textContent = you && you.hand ? "\u2713" : "";
  const share = byId("share-screen");
  share.hidden = !canPublish(you, "screen");
  share.disabled = !inLesson || ui.busy.has("screen");
  setPressed(share, Boolean(published.screen));
  share.querySelector(".toggle-state").textContent = published.screen ? "\u2713" : "";
  byId("end-lesson").hidden = !you || !["teacher", "admin"].includes(you.role);
  byId("end-lesson").disabled = !inLesson;
  // Recording: moderators start and stop it, unless the lesson's policy is off.
  const state = ui.client ? ui.client.state : null;
  const lesson = state && state.lesson;
  const moderator = Boolean(you && ["teacher", "assistant", "admin"].includes(you.role));
  const record = byId("record");
  record.hidden = !moderator || !lesson || lesson.recording_policy === "off";
  record.disabled = !inLesson || ui.busy.has("record");
  const recording = Boolean(state && state.recording);
  setPressed(record, recording);
  record.querySelector(".toggle-state").textContent = recording ? "\u25CF" : "";
  // Links for teachers to the lesson's recordings and attendance; the token travels in
  // the fragment, never to the server's logs.
  const pages = { "recordings-link": "/recordings", "attendance-link": "/admin" };
  for (const [id, path] of Object.entries(pages)) {
    const link = byId(id);
    link.hidden = !moderator || !lesson;
    if (lesson) {
      link.href = `${path}?lesson=${encodeURIComponent(lesson.id)}#token=${encodeURIComponent(ui.token || "")}`;
      link.target = "_blank";
      link.rel = "noopener";
    }
  }
}

async function toggleRecording() {
  const recording = Boolean(ui.client && ui.client.state.recording);
  await busy("record", () => ui.client.record(!recording));
}

async function busy(source, job) {
  ui.busy.add(source);
  renderControls();
  try {
    await job();
  } catch (error) {
    hintError(error);
  } finally {
    ui.busy.delete(source);
    renderControls();
  }
}

// Microphone and camera: start publishing the first time, then mute/unmute.
function toggleMedia(source) {
  const client = ui.client;
  return busy(source, async () => {
    const state = client.published()[source];
    if (!state) {
      const track = source === "camera" ? await getCamera() : await getMicrophone();
      await client.publish({ [source]: track });
    } else {
      await client.setMuted(source, state === "on");
    }
    hint(null);
  });
}

function toggleScreen() {
  const client = ui.client;
  if (client.published().screen) {
    return busy("screen", () => client.unpublish("screen"));
  }
  // getDisplayMedia is called first thing in the click, while it counts as one.
  const picking = getScreen();
  return busy("screen", async () => {
    let track;
    try {
      track = await picking;
    } catch (error) {
      if (error && error.name === "NotAllowedError") {
        return; // the person cancelled the picker
      }
      throw error;
    }
    // The browser's own "Stop sharing" button ends the track.
    track.addEventListener("ended", () => {
      if (client.localTrack("screen") === track) {
        client.unpublish("screen").catch(hintError);
      }
    });
    await client.publish({ screen: track });
  });
}

function toggleHand() {
  const client = ui.client;
  const you = client.state.you;
  client.raiseHand(!(you && you.hand)).catch(hintError);
}

async function endLesson() {
  const ok = await confirmDialog({
    title: t("confirm.end_title"),
    text: t("confirm.end_text"),
    ok: t("confirm.end_ok"),
  });
  if (ok) {
    ui.client.end().catch(hintError);
  }
}

const moderation = {
  giveFloor: (id, sources) => ui.client.giveFloor(id, sources).catch(hintError),
  takeFloor: (id) => ui.client.takeFloor(id).catch(hintError),
  lowerHand: (id) => ui.client.lowerHand(id).catch(hintError),
  mute: (id, source) => ui.client.mute(id, source).catch(hintError),
  admit: (id) => ui.client.admit(id).catch(hintError),
  deny: (id) => ui.client.deny(id).catch(hintError),
  async remove(participant) {
    const args = { name: participant.name };
    const ok = await confirmDialog({
      title: t("confirm.remove_title", args),
      text: t("confirm.remove_text", args),
      ok: t("confirm.remove_ok"),
    });
    if (ok) {
      ui.client.remove(participant.id).catch(hintError);
    }
  },
};

function bindControls() {
  byId("mic").addEventListener("click", () => toggleMedia("microphone"));
  byId("camera").addEventListener("click", () => toggleMedia("camera"));
  byId("share-screen").addEventListener("click", () => toggleScreen());
  byId("hand").addEventListener("click", () => toggleHand());
  byId("end-lesson").addEventListener("click", () => endLesson());
  byId("record").addEventListener("click", () => toggleRecording());
  byId("leave").addEventListener("click", () => ui.client && ui.client.leave());
  byId("lobby-leave").addEventListener("click", () => ui.client && ui.client.leave());
  byId("rejoin").addEventListener("click", () => location.reload());
  byId("enable-sound").addEventListener("click", () => {
    byId("sound-banner").hidden = true;
    stage.enableSound();
  });
  // Closing the tab is leaving: the attendance record gets the exact time
  // instead of a network timeout 15 s later.
  window.addEventListener("pagehide", () => {
    if (ui.client && ui.client.connected) {
      ui.client.leave();
    }
  });
}

function buildPanels() {
  stage = new Stage({
    stage: byId("stage"),
    mainVideo: byId("main-video"),
    screenVideo: byId("screen-video"),
    strip: byId("strip"),
    audioSinks: byId("audio-sinks"),
    emptyNote: byId("stage-empty"),
    onSoundBlocked: () => {
      byId("sound-banner").hidden = false;
    },
  });
  people = new ParticipantList({
    list: byId("participant-list"),
    count: byId("people-count"),
    actions: moderation,
  });
  lobbyList = new LobbyList({
    panel: byId("lobby-panel"),
    list: byId("lobby-list"),
    count: byId("lobby-count"),
    admitAll: byId("admit-all"),
    actions: moderation,
  });
  chat = new ChatPanel({
    list: byId("chat-list"),
    form: byId("chat-form"),
    input: byId("chat-input"),
    send: byId("chat-send"),
    error: byId("chat-error"),
    onSend: (text) => ui.client.chat(text),
  });
}

async function main() {
  await initI18n();
  bindLanguageSelect(byId("language"));
  buildPanels();
  bindControls();
  ui.lessonId = lessonIdFromLocation();
  ui.token = ui.lessonId ? takeToken(ui.lessonId) : null;
  if (!ui.lessonId || !ui.token) {
    showView("notoken");
    return;
  }
  ui.claims = tokenClaims(ui.token);
  ui.role = (ui.claims && ui.claims.role) || "student";
  loadLessonTitle();
  if (AUTOJOIN) {
    autojoin();
  } else {
    showCheck();
  }
}

main();
