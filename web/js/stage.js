// Where the videos go, and the sound.
//
// The stage shows the teacher's camera large (`main-video`); when someone
// shares a screen, the screen takes the stage (`screen-video`) and the
// teacher's camera shrinks to a corner. Every other video (students with the
// floor, assistants, a second screen) goes to the strip below as
// `video-<participant>-<source>`. Each remote microphone plays in its own
// <audio>, never muted; if the browser blocks sound until a click, the page
// shows a button for it (onSoundBlocked).

import { h } from "./dom.js";
import { setLabel, setText } from "./i18n.js";

const ROLE_RANK = { teacher: 0, admin: 1, assistant: 2 };
const SELF = "self";

function trackOf(element) {
  const stream = element.srcObject;
  return stream ? stream.getTracks()[0] || null : null;
}

export class Stage {
  constructor({ stage, mainVideo, screenVideo, strip, audioSinks, emptyNote, onSoundBlocked }) {
    this.stage = stage;
    this.mainVideo = mainVideo;
    this.screenVideo = screenVideo;
    this.strip = strip;
    this.audioSinks = audioSinks;
    this.emptyNote = emptyNote;
    this.onSoundBlocked = onSoundBlocked || (() => {});
    this.soundBlocked = false;
    // "participant/source" -> {participant, source, track, local}
    this.videos = new Map();
    // participant -> <audio>
    this.audios = new Map();
    // strip key -> <li>
    this.tiles = new Map();
    this.participants = new Map();
    this.youId = null;
    this.youRole = null;
  }

  setParticipants(participants, you) {
    this.participants = participants;
    this.youId = you ? you.id : null;
    this.youRole = you ? you.role : null;
    this.layout();
  }

  nameOf(id) {
    const p = this.participants.get(id);
    return p ? p.name : id;
  }

  roleOf(id) {
    if (id === SELF) {
      return this.youRole;
    }
    const p = this.participants.get(id);
    return p ? p.role : null;
  }

  // A remote track from LessonClient's `track` event.
  addRemote({ track, participant, source }) {
    if (source === "microphone") {
      this.addAudio(participant, track);
      return;
    }
    this.videos.set(`${participant}/${source}`, { participant, source, track, local: false });
    this.layout();
  }

  removeRemote({ track, participant, source }) {
    if (source === "microphone") {
      const audio = this.audios.get(participant);
      if (audio && trackOf(audio) === track) {
        audio.srcObject = null;
        audio.remove();
        this.audios.delete(participant);
      }
      return;
    }
    const key = `${participant}/${source}`;
    const entry = this.videos.get(key);
    if (entry && entry.track === track) {
      this.videos.delete(key);
      this.layout();
    }
  }

  // Our own camera or screen (a preview, muted), or null when it stops.
  setLocal(source, track) {
    const key = `${SELF}/${source}`;
    if (track) {
      this.videos.set(key, { participant: SELF, source, track, local: true });
    } else {
      this.videos.delete(key);
    }
    this.layout();
  }

  clearRemote() {
    for (const key of [...this.videos.keys()]) {
      if (!this.videos.get(key).local) {
        this.videos.delete(key);
      }
    }
    for (const audio of this.audios.values()) {
      audio.srcObject = null;
      audio.remove();
    }
    this.audios.clear();
    this.layout();
  }

  addAudio(participant, track) {
    let audio = this.audios.get(participant);
    if (!audio) {
      audio = h("audio", { autoplay: true, testid: `audio-${participant}` });
      this.audios.set(participant, audio);
      this.audioSinks.append(audio);
    }
    setLabel(audio, "stage.microphone_of", { name: this.nameOf(participant) });
    audio.srcObject = new MediaStream([track]);
    this.play(audio);
  }

  play(element) {
    const attempt = element.play();
    if (attempt && typeof attempt.catch === "function") {
      attempt.catch((error) => {
        // Autoplay policy: sound needs a click on this page first.
        if (error && error.name === "NotAllowedError" && !element.muted) {
          this.soundBlocked = true;
          this.onSoundBlocked();
        }
      });
    }
  }

  // After the "enable sound" click: start every media element again.
  enableSound() {
    this.soundBlocked = false;
    for (const element of [...this.audios.values(), ...document.querySelectorAll("video")]) {
      if (element.srcObject) {
        this.play(element);
      }
    }
  }

  // The camera that takes the stage: the teacher's (ours, if we teach), else
  // an admin's or assistant's; never a student's.
  pickMain(cameras) {
    const ranked = cameras
      .filter((e) => this.roleOf(e.participant) in ROLE_RANK)
      .sort((a, b) => ROLE_RANK[this.roleOf(a.participant)] - ROLE_RANK[this.roleOf(b.participant)]);
    return ranked[0] || null;
  }

  // The screen that takes the stage: a moderator's first, else anyone's.
  pickScreen(screens) {
    return screens.find((e) => this.roleOf(e.participant) in ROLE_RANK) || screens[0] || null;
  }

  layout() {
    const entries = [...this.videos.values()];
    const main = this.pickMain(entries.filter((e) => e.source === "camera"));
    const screen = this.pickScreen(entries.filter((e) => e.source === "screen"));
    this.showOnStage(this.mainVideo, main, "stage.camera_of");
    this.showOnStage(this.screenVideo, screen, "stage.screen_of");
    this.stage.dataset.layout = screen ? "screen" : "camera";
    this.emptyNote.hidden = Boolean(main || screen);
    // A teacher looking at an empty stage is the one who should fill it.
    setText(this.emptyNote, this.youRole in ROLE_RANK ? "stage.waiting_self" : "stage.waiting");
    const rest = entries.filter((e) => e !== main && e !== screen);
    this.renderStrip(rest);
  }

  showOnStage(video, entry, labelKey) {
    if (!entry) {
      video.srcObject = null;
      video.hidden = true;
      delete video.dataset.participant;
      delete video.dataset.source;
      return;
    }
    this.attach(video, entry.track);
    video.hidden = false;
    video.dataset.participant = entry.local ? this.youId || SELF : entry.participant;
    video.dataset.source = entry.source;
    video.classList.toggle("mirror", entry.local && entry.source === "camera");
    video.dataset.local = entry.local ? "true" : "false";
    const name = entry.local ? null : this.nameOf(entry.participant);
    if (entry.local) {
      setLabel(video, entry.source === "camera" ? "stage.your_camera" : "stage.your_screen");
    } else {
      setLabel(video, labelKey, { name });
    }
  }

  attach(video, track) {
    if (trackOf(video) === track) {
      return;
    }
    video.srcObject = new MediaStream([track]);
    this.play(video);
  }

  renderStrip(entries) {
    const wanted = new Map(entries.map((e) => [`${e.participant}/${e.source}`, e]));
    for (const [key, tile] of this.tiles) {
      if (!wanted.has(key)) {
        const video = tile.querySelector("video");
        video.srcObject = null;
        tile.remove();
        this.tiles.delete(key);
      }
    }
    for (const [key, entry] of wanted) {
      let tile = this.tiles.get(key);
      if (!tile) {
        tile = this.makeTile(entry);
        this.tiles.set(key, tile);
        this.strip.append(tile);
      }
      this.updateTile(tile, entry);
    }
    this.strip.hidden = this.tiles.size === 0;
  }

  makeTile(entry) {
    const testid = entry.local
      ? `self-video${entry.source === "screen" ? "-screen" : ""}`
      : `video-${entry.participant}-${entry.source}`;
    const video = h("video", {
      autoplay: true,
      playsinline: true,
      muted: true,
      testid,
      dataset: { participant: entry.local ? this.youId || SELF : entry.participant, source: entry.source },
    });
    // Video elements carry no sound (each microphone has its own <audio>),
    // so they can autoplay muted without a click.
    video.muted = true;
    if (entry.local && entry.source === "camera") {
      video.classList.add("mirror");
    }
    return h("li", { class: "tile" }, h("figure", {}, video, h("figcaption", {})));
  }

  updateTile(tile, entry) {
    const video = tile.querySelector("video");
    const caption = tile.querySelector("figcaption");
    this.attach(video, entry.track);
    const participant = this.participants.get(entry.participant);
    tile.dataset.speaking = participant && participant.speaking ? "true" : "false";
    if (entry.local) {
      const key = entry.source === "camera" ? "stage.your_camera" : "stage.your_screen";
      setLabel(video, key);
      setText(caption, key);
      return;
    }
    const name = this.nameOf(entry.participant);
    const key = entry.source === "screen" ? "stage.screen_of" : "stage.camera_of";
    setLabel(video, key, { name });
    caption.textContent = name;
  }
}
