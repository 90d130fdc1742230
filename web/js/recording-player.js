// Plays the lanes of a recording in sync on one clock.
//
// Each lane (recording-timeline.js) has one media element. The master clock is
// the first lane element that is playing its part (the teacher's microphone,
// else the camera, else the screen, else other voices): the timeline position
// is its part's start_offset_s plus its currentTime. Where no lane has a part
// (a gap in every track), a wall clock carries the position on at the chosen
// speed. Every other element follows: it is given the part that covers the
// position, seeked when it drifts more than DRIFT_S from where it should be,
// and mirrors play, pause and playbackRate.

export const DRIFT_S = 0.2;
const TICK_MS = 200;
const HAVE_METADATA = 1;
const HAVE_FUTURE_DATA = 3;
// A lane whose element fails this often within a minute is given up.
const MAX_ERRORS = 3;
const ERROR_WINDOW_MS = 60_000;

export class Player extends EventTarget {
  // lanes: {camera, screen, audio: [Lane]}; elements: {camera, screen, audio} media
  // elements; audioHost: where extra <audio> elements for other voices go.
  constructor({ lanes, length, elements, audioHost }) {
    super();
    this.length = Math.max(0, length);
    this.position = 0;
    this.playing = false;
    this.rate = 1;
    this.base = { pos: 0, wall: performance.now() };
    this.bindings = [];
    const bind = (lane, element, video) => {
      if (!lane) {
        return;
      }
      const binding = { lane, el: element, video, segment: null, url: null, needsSeek: false };
      binding.errors = [];
      binding.broken = false;
      element.addEventListener("error", () => this.failed(binding));
      this.bindings.push(binding);
    };
    // Master order: the teacher's voice, the camera, the screen, the other voices.
    const [firstVoice, ...otherVoices] = lanes.audio;
    bind(firstVoice, elements.audio, false);
    bind(lanes.camera, elements.camera, true);
    bind(lanes.screen, elements.screen, true);
    for (const lane of otherVoices) {
      const extra = document.createElement("audio");
      extra.preload = "auto";
      audioHost.append(extra);
      bind(lane, extra, false);
    }
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.tick();
  }

  get hasMedia() {
    return this.bindings.length > 0;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // The binding whose element currently drives the clock, or null.
  master() {
    for (const binding of this.bindings) {
      const el = binding.el;
      if (
        binding.segment &&
        !binding.broken &&
        !binding.needsSeek &&
        !el.seeking &&
        !el.ended &&
        el.readyState >= HAVE_METADATA &&
        binding.lane.at(this.position) === binding.segment
      ) {
        return binding;
      }
    }
    return null;
  }

  tick() {
    const wall = performance.now();
    let master = null;
    if (this.playing) {
      master = this.master();
      let pos = master
        ? master.segment.start + master.el.currentTime
        : this.base.pos + ((wall - this.base.wall) / 1000) * this.rate;
      if (pos >= this.length) {
        pos = this.length;
        this.position = pos;
        this.pause();
        this.emit("ended");
        return;
      }
      this.position = Math.max(0, pos);
    }
    this.base = { pos: this.position, wall };
    // A master that waits for data holds everyone, rather than letting others run ahead.
    const stalled = Boolean(master && master.el.readyState < HAVE_FUTURE_DATA);
    for (const binding of this.bindings) {
      this.sync(binding, binding === master, stalled);
    }
    this.emit("time", { position: this.position, playing: this.playing, stalled });
    this.layout();
  }

  sync(binding, isMaster, stalled) {
    const el = binding.el;
    const segment = binding.broken ? null : binding.lane.at(this.position);
    if (segment !== binding.segment || (segment && binding.reload)) {
      binding.segment = segment;
      binding.reload = false;
      if (segment) {
        binding.url = segment.url;
        el.src = segment.url;
        binding.needsSeek = true;
      } else if (binding.url !== null) {
        binding.url = null;
        el.pause();
        el.removeAttribute("src");
        el.load();
      }
    }
    if (!segment) {
      return;
    }
    const target = Math.max(0, this.position - segment.start);
    if (el.readyState >= HAVE_METADATA && !el.seeking) {
      const drift = Math.abs(el.currentTime - target);
      if (binding.needsSeek || (!isMaster && drift > DRIFT_S)) {
        el.currentTime = target;
        binding.needsSeek = false;
      }
    }
    if (el.playbackRate !== this.rate) {
      el.playbackRate = this.rate;
    }
    const shouldPlay = this.playing && (isMaster || !stalled);
    if (shouldPlay && el.paused && !el.ended) {
      el.play().catch((error) => {
        if (error && error.name === "NotAllowedError") {
          // The browser wants a click before sound: stop, and let the page say so.
          this.pause();
          this.emit("blocked");
        }
      });
    } else if (!shouldPlay && !el.paused) {
      el.pause();
    }
  }

  // Which videos have a part at this moment: the page arranges the stage from it.
  layout() {
    const state = { camera: false, screen: false };
    for (const binding of this.bindings) {
      if (binding.video && binding.segment) {
        state[binding.lane.source] = true;
      }
    }
    const last = this.lastLayout;
    if (!last || last.camera !== state.camera || last.screen !== state.screen) {
      this.lastLayout = state;
      this.emit("layout", state);
    }
  }

  failed(binding) {
    if (!binding.url) {
      return; // the src was removed on purpose
    }
    const now = performance.now();
    binding.errors = binding.errors.filter((at) => now - at < ERROR_WINDOW_MS);
    binding.errors.push(now);
    if (binding.errors.length > MAX_ERRORS) {
      binding.broken = true;
      this.emit("broken", { lane: binding.lane.key });
      this.tick();
      return;
    }
    // Most often an expired signed URL (10 minutes): the page fetches fresh ones.
    this.emit("mediaerror", { lane: binding.lane.key });
  }

  // Fresh signed URLs from GET /api/recordings/{id}; elements that failed reload.
  updateUrls(parts) {
    for (const part of parts) {
      for (const binding of this.bindings) {
        const segment = binding.lane.byPart(part.id);
        if (segment && part.url) {
          segment.url = part.url;
          if (binding.segment === segment && binding.errors.length) {
            binding.reload = true;
          }
        }
      }
    }
    this.tick();
  }

  play() {
    if (this.position >= this.length) {
      this.position = 0;
      this.markSeek();
    }
    this.playing = true;
    this.base = { pos: this.position, wall: performance.now() };
    this.tick(); // at once: play() must run inside the click that asked for it
    this.emit("state", { playing: true });
  }

  pause() {
    if (!this.playing) {
      return;
    }
    this.playing = false;
    this.tick();
    this.emit("state", { playing: false });
  }

  toggle() {
    if (this.playing) {
      this.pause();
    } else {
      this.play();
    }
  }

  markSeek() {
    for (const binding of this.bindings) {
      binding.needsSeek = true;
    }
  }

  seek(t) {
    const clamped = Math.min(Math.max(0, Number(t) || 0), this.length);
    this.emit("seeking", { from: this.position, to: clamped });
    this.position = clamped;
    this.markSeek();
    this.tick();
  }

  setRate(rate) {
    const value = Number(rate);
    if (!Number.isFinite(value) || value <= 0) {
      return;
    }
    this.base = { pos: this.position, wall: performance.now() };
    this.rate = value;
    this.tick();
  }

  destroy() {
    clearInterval(this.timer);
    for (const binding of this.bindings) {
      binding.el.pause();
    }
  }
}
