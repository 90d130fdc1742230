// Receives the teacher's camera and microphone from the Sabaq SFU, as a student.
//
// The SFU offers and the page answers: after POST join, the page long-polls
// GET offer for each SubscriberOffer (the first one and every renegotiation),
// applies it, answers with Chrome's own SDP (no munging) once ICE gathering is
// complete, and POSTs answer. The offer's `tracks` table (mid -> track,
// publisher, source) labels the m-lines: the teacher's camera goes to the
// <video>, the microphone to the <audio>.
//
// The test reads window.sabaqState (the step), window.sabaqConnectionState
// (RTCPeerConnection.connectionState), window.sabaqError (whatever went
// wrong, else null), window.sabaqNegotiations (offers answered),
// window.sabaqTrackEvents (mute/unmute/ended of remote tracks) and calls
// window.sabaqInbound() and window.sabaqTransceivers() for the receive side.

import { gatheringComplete, postJson } from "./common.js";

const statusLine = document.getElementById("status");
const video = document.getElementById("teacher-camera");
const audio = document.getElementById("teacher-microphone");
const videoLabel = document.getElementById("teacher-label");

window.sabaqState = "starting";
window.sabaqConnectionState = "new";
window.sabaqError = null;
window.sabaqLog = [];
window.sabaqNegotiations = 0;
window.sabaqTrackEvents = [];
window.sabaqPeerConnection = null;

// mid -> {trackId, publisherId, source} of the latest offer; `everLabelled` keeps
// the labels of m-lines that have since gone inactive, for the stats.
let labels = new Map();
const everLabelled = new Map();

function report(state, text) {
  window.sabaqState = state;
  window.sabaqLog.push(`${state}: ${text}`);
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}

function fail(error) {
  const message = String(error && error.message ? error.message : error);
  if (window.sabaqError === null) {
    window.sabaqError = message;
  }
  report("failed", `Could not receive the lesson: ${message}`);
}

window.addEventListener("error", (event) => fail(event.message));
window.addEventListener("unhandledrejection", (event) => fail(event.reason));

function describe(label) {
  return label ? `${label.publisherId}'s ${label.source}` : "an unlabelled track";
}

function play(element) {
  element.play().catch((error) => window.sabaqLog.push(`play ${element.id}: ${error}`));
}

// Put each labelled m-line's track in its element (a reused m-line keeps its track).
function attach(pc) {
  for (const transceiver of pc.getTransceivers()) {
    const label = labels.get(transceiver.mid);
    const track = transceiver.receiver.track;
    if (!label) {
      continue;
    }
    const element = label.source === "microphone" ? audio : label.source === "camera" ? video : null;
    if (element === null) {
      window.sabaqLog.push(`ignoring ${describe(label)} on mid ${transceiver.mid}`);
      continue;
    }
    const current = element.srcObject && element.srcObject.getTracks()[0];
    if (current !== track) {
      element.srcObject = new MediaStream([track]);
      play(element);
    }
    if (element === video) {
      videoLabel.textContent = `${describe(label)} (track ${label.trackId})`;
    }
  }
}

function watchTrack(transceiver) {
  const track = transceiver.receiver.track;
  if (track.sabaqWatched) {
    return;
  }
  track.sabaqWatched = true;
  for (const type of ["mute", "unmute", "ended"]) {
    track.addEventListener(type, () => {
      const label = everLabelled.get(transceiver.mid);
      window.sabaqTrackEvents.push({
        type,
        mid: transceiver.mid,
        kind: track.kind,
        source: label ? label.source : null,
        at: performance.now(),
      });
    });
  }
}

// What the SFU's m-lines deliver, keyed by source ("camera", "microphone") where the
// offers labelled the mid, else by kind and mid.
window.sabaqInbound = async () => {
  const pc = window.sabaqPeerConnection;
  const result = {};
  if (!pc) {
    return result;
  }
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp") {
      const label = everLabelled.get(s.mid);
      const codec = s.codecId ? stats.get(s.codecId) : null;
      // What the SFU's sender reports said (Chrome keeps them as remote-outbound-rtp).
      const remote = s.remoteId ? stats.get(s.remoteId) : null;
      result[label ? label.source : `${s.kind}:${s.mid}`] = {
        mid: s.mid,
        kind: s.kind,
        ssrc: s.ssrc,
        codec: codec ? codec.mimeType : null,
        packetsReceived: s.packetsReceived,
        packetsLost: s.packetsLost,
        bytesReceived: s.bytesReceived,
        jitter: s.jitter,
        jitterBufferDelay: s.jitterBufferDelay,
        jitterBufferEmittedCount: s.jitterBufferEmittedCount,
        retransmittedPacketsReceived: s.retransmittedPacketsReceived,
        nackCount: s.nackCount,
        pliCount: s.pliCount,
        firCount: s.firCount,
        framesReceived: s.framesReceived,
        framesDecoded: s.framesDecoded,
        keyFramesDecoded: s.keyFramesDecoded,
        framesDropped: s.framesDropped,
        framesPerSecond: s.framesPerSecond,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        freezeCount: s.freezeCount,
        decoderImplementation: s.decoderImplementation,
        concealedSamples: s.concealedSamples,
        totalSamplesReceived: s.totalSamplesReceived,
        senderReports: remote ? remote.reportsSent : 0,
        senderReportPackets: remote ? remote.packetsSent : null,
      };
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      result.transport = {
        currentRoundTripTime: s.currentRoundTripTime,
        bytesReceived: s.bytesReceived,
        bytesSent: s.bytesSent,
      };
    }
  });
  return result;
};

window.sabaqTransceivers = () => {
  const pc = window.sabaqPeerConnection;
  if (!pc) {
    return [];
  }
  return pc.getTransceivers().map((t) => ({
    mid: t.mid,
    kind: t.receiver.track.kind,
    direction: t.direction,
    currentDirection: t.currentDirection,
    source: labels.has(t.mid) ? labels.get(t.mid).source : null,
    trackReadyState: t.receiver.track.readyState,
    trackMuted: t.receiver.track.muted,
  }));
};

// The <video> as the user sees it.
window.sabaqVideo = () => ({
  videoWidth: video.videoWidth,
  videoHeight: video.videoHeight,
  currentTime: video.currentTime,
  paused: video.paused,
  readyState: video.readyState,
  audioPaused: audio.paused,
  audioCurrentTime: audio.currentTime,
});

async function nextOffer() {
  // 204: nothing yet, ask again; 410: the session is over.
  for (;;) {
    const response = await fetch("offer", { cache: "no-store" });
    if (response.status === 204) {
      continue;
    }
    if (response.status === 410) {
      return null;
    }
    const text = await response.text();
    if (!response.ok) {
      throw new Error(`offer answered ${response.status}: ${text}`);
    }
    return JSON.parse(text);
  }
}

async function answer(pc, offer) {
  labels = new Map(offer.tracks.map((t) => [t.mid, t]));
  for (const [mid, label] of labels) {
    everLabelled.set(mid, label);
  }
  await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gatheringComplete(pc);
  await postJson("answer", { sdp: pc.localDescription.sdp });
  window.sabaqNegotiations += 1;
  for (const transceiver of pc.getTransceivers()) {
    watchTrack(transceiver);
  }
  attach(pc);
  const sending = offer.tracks.map((t) => describe(t)).join(", ");
  window.sabaqLog.push(
    `answered offer ${window.sabaqNegotiations}: ${sending || "no tracks"}; ` +
      pc
        .getTransceivers()
        .map((t) => `${t.mid}=${t.currentDirection}`)
        .join(" "),
  );
  if (offer.tracks.length === 0) {
    videoLabel.textContent = "The teacher has left.";
    report("idle", "Nobody is publishing.");
  } else if (pc.connectionState === "connected") {
    report("receiving", `Receiving ${sending}.`);
  }
}

async function subscribe() {
  report("joining", "Joining the lesson…");
  await postJson("join", {});

  const pc = new RTCPeerConnection({ iceServers: [] });
  window.sabaqPeerConnection = pc;
  pc.addEventListener("connectionstatechange", () => {
    window.sabaqConnectionState = pc.connectionState;
    if (pc.connectionState === "connected") {
      report("receiving", "Receiving the lesson.");
    } else if (pc.connectionState === "failed") {
      fail("the connection to the media server failed");
    }
  });
  pc.addEventListener("track", (event) => {
    watchTrack(event.transceiver);
    window.sabaqLog.push(`track ${event.track.kind} on mid ${event.transceiver.mid}`);
  });

  report("waiting", "Waiting for the teacher…");
  for (;;) {
    const offer = await nextOffer();
    if (offer === null) {
      report("closed", "The lesson is over.");
      return;
    }
    await answer(pc, offer);
  }
}

subscribe().catch(fail);
