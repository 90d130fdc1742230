// Cameras, microphones and the screen: getting tracks, and the device check
// before joining (camera preview, microphone level, device choice).

import { h } from "./dom.js";
import { setText } from "./i18n.js";

const DEVICE_KEY = { camera: "sabaq.camera", microphone: "sabaq.microphone" };

// 540p at 24 fps: sharp enough for a face and a whiteboard, light enough for
// students on home connections (the SFU forwards one encoding to everyone).
const CAMERA = { width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 24, max: 30 } };
const MICROPHONE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function remembered(kind) {
  try {
    return localStorage.getItem(DEVICE_KEY[kind]) || "";
  } catch {
    return "";
  }
}

export function rememberDevice(kind, deviceId) {
  try {
    localStorage.setItem(DEVICE_KEY[kind], deviceId || "");
  } catch {
    // not remembered: the default device is used next time
  }
}

function constraints(kind, deviceId) {
  const base = kind === "camera" ? CAMERA : MICROPHONE;
  const id = deviceId === undefined ? remembered(kind) : deviceId;
  // `ideal`, not `exact`: an unplugged remembered device falls back to another.
  return id ? { ...base, deviceId: { ideal: id } } : { ...base };
}

export async function getCamera(deviceId) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: constraints("camera", deviceId) });
  return stream.getVideoTracks()[0];
}

export async function getMicrophone(deviceId) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: constraints("microphone", deviceId) });
  return stream.getAudioTracks()[0];
}

// Camera and microphone with one permission prompt (autojoin).
export async function getCameraAndMicrophone() {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: constraints("camera"),
    audio: constraints("microphone"),
  });
  return { camera: stream.getVideoTracks()[0], microphone: stream.getAudioTracks()[0] };
}

// Looked up at call time, never cached: tests replace getDisplayMedia with a
// canvas stream, and it must be called from the click that asks for it.
export async function getScreen() {
  const stream = await navigator.mediaDevices.getDisplayMedia({
    video: { frameRate: { ideal: 10, max: 15 } },
    audio: false,
  });
  const track = stream.getVideoTracks()[0];
  // Slides and code: keep text sharp rather than motion smooth.
  if ("contentHint" in track) {
    track.contentHint = "detail";
  }
  return track;
}

// A translation key for a getUserMedia/getDisplayMedia failure.
export function mediaErrorCode(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "media_denied";
    case "NotFoundError":
    case "OverconstrainedError":
      return "media_not_found";
    case "NotReadableError":
    case "AbortError":
      return "media_busy";
    default:
      return "media_failed";
  }
}

export function mediaAvailable() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

// Shows a microphone's level in a <meter> (0..1), from an AnalyserNode.
class LevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.context = null;
    this.frame = 0;
  }

  start(track) {
    this.stop();
    const AudioContextClass = window.AudioContext || window.webkitAudioContext;
    if (!AudioContextClass || !track) {
      return;
    }
    this.context = new AudioContextClass();
    const source = this.context.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const tick = () => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) {
        sum += sample * sample;
      }
      // RMS scaled so that normal speech fills most of the bar.
      this.meter.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      this.frame = requestAnimationFrame(tick);
    };
    tick();
    // Browsers start an AudioContext suspended until the page has been clicked.
    if (this.context.state === "suspended") {
      const resume = () => this.context && this.context.resume();
      document.addEventListener("click", resume, { once: true });
    }
  }

  stop() {
    cancelAnimationFrame(this.frame);
    if (this.context) {
      this.context.close().catch(() => {});
      this.context = null;
    }
    this.meter.value = 0;
  }
}

// The device check: fills the camera and microphone <select>s once the
// browser has granted access (labels are empty before), previews the camera
// and shows the microphone level. `take()` hands the tracks over for
// publishing; `stop()` releases everything.
export class DeviceCheck {
  constructor({ video, cameraSelect, microphoneSelect, meter, status }) {
    this.video = video;
    this.cameraSelect = cameraSelect;
    this.microphoneSelect = microphoneSelect;
    this.status = status;
    this.meter = new LevelMeter(meter);
    this.camera = null;
    this.microphone = null;
    this.started = false;
    cameraSelect.addEventListener("change", () => this.switchDevice("camera", cameraSelect.value));
    microphoneSelect.addEventListener("change", () =>
      this.switchDevice("microphone", microphoneSelect.value),
    );
  }

  async start() {
    this.started = true;
    this.say("devices.asking");
    if (!mediaAvailable()) {
      this.say("error.media_unavailable");
      return false;
    }
    // Ask for both at once (one permission prompt), then each alone if that fails.
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: constraints("camera"),
        audio: constraints("microphone"),
      });
      this.setTrack("camera", stream.getVideoTracks()[0] || null);
      this.setTrack("microphone", stream.getAudioTracks()[0] || null);
    } catch (error) {
      await this.tryAlone("camera");
      await this.tryAlone("microphone");
      if (!this.camera && !this.microphone) {
        this.say(`error.${mediaErrorCode(error)}`);
        await this.fillSelects();
        return false;
      }
    }
    await this.fillSelects();
    this.say(this.camera && this.microphone ? "devices.ready" : "devices.partial");
    return true;
  }

  async tryAlone(kind) {
    try {
      this.setTrack(kind, kind === "camera" ? await getCamera() : await getMicrophone());
    } catch {
      this.setTrack(kind, null);
    }
  }

  setTrack(kind, track) {
    const old = this[kind];
    if (old && old !== track) {
      old.stop();
    }
    this[kind] = track;
    if (kind === "camera") {
      this.video.srcObject = track ? new MediaStream([track]) : null;
    } else if (track) {
      this.meter.start(track);
    } else {
      this.meter.stop();
    }
  }

  async switchDevice(kind, deviceId) {
    rememberDevice(kind, deviceId);
    if (!this.started) {
      return;
    }
    try {
      // Release the old device first: some cameras cannot be opened twice.
      this.setTrack(kind, null);
      this.setTrack(kind, kind === "camera" ? await getCamera(deviceId) : await getMicrophone(deviceId));
      this.say("devices.ready");
    } catch (error) {
      this.say(`error.${mediaErrorCode(error)}`);
    }
  }

  async fillSelects() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    this.fill(this.cameraSelect, devices, "videoinput", this.camera, "devices.camera_n");
    this.fill(this.microphoneSelect, devices, "audioinput", this.microphone, "devices.microphone_n");
  }

  fill(select, devices, kind, track, fallbackKey) {
    const current = track ? track.getSettings().deviceId : remembered(kind === "videoinput" ? "camera" : "microphone");
    const options = devices.filter((d) => d.kind === kind && d.deviceId);
    select.replaceChildren();
    options.forEach((device, index) => {
      const option = h("option", { value: device.deviceId });
      if (device.label) {
        option.textContent = device.label;
      } else {
        setText(option, fallbackKey, { n: index + 1 });
      }
      select.append(option);
    });
    if (options.length === 0) {
      select.append(h("option", { value: "", i18n: "devices.none" }));
    }
    if (current && options.some((d) => d.deviceId === current)) {
      select.value = current;
    }
    select.disabled = options.length === 0;
  }

  say(key) {
    if (this.status) {
      setText(this.status, key);
    }
  }

  // Hands over the tracks wanted for publishing and stops the rest; the
  // check is over afterwards (the preview and meter release their devices).
  take({ camera = true, microphone = true } = {}) {
    const taken = {};
    if (camera && this.camera) {
      taken.camera = this.camera;
    } else if (this.camera) {
      this.camera.stop();
    }
    if (microphone && this.microphone) {
      taken.microphone = this.microphone;
    } else if (this.microphone) {
      this.microphone.stop();
    }
    this.camera = null;
    this.microphone = null;
    this.meter.stop();
    this.video.srcObject = null;
    this.started = false;
    return taken;
  }

  stop() {
    for (const track of Object.values(this.take())) {
      track.stop();
    }
  }
}
