// Publishes the browser's camera and microphone to the Sabaq SFU.
//
// The offer is Chrome's own (no SDP munging): every codec, RTX/RED/ULPFEC and
// header extension it proposes reaches the SFU as is. ICE is not trickled: the
// offer is POSTed once gathering is complete, so it carries every candidate.
//
// The test page reads its progress from window.sabaqState (the step),
// window.sabaqConnectionState (RTCPeerConnection.connectionState) and
// window.sabaqError (the message of whatever went wrong, else null).

import { gatheringComplete, postJson } from "./common.js";

const statusLine = document.getElementById("status");
const preview = document.getElementById("preview");
const SOURCE_OF_KIND = { video: "camera", audio: "microphone" };

window.sabaqState = "starting";
window.sabaqConnectionState = "new";
window.sabaqError = null;
window.sabaqLog = [];

function report(state, text) {
  window.sabaqState = state;
  window.sabaqLog.push(`${state}: ${text}`);
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}

// What the browser has sent so far, per kind: lets a test tell "not sending" from "not received".
window.sabaqOutbound = async () => {
  const pc = window.sabaqPeerConnection;
  const result = {};
  if (!pc) {
    return result;
  }
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "outbound-rtp") {
      result[s.kind] = { packetsSent: s.packetsSent, bytesSent: s.bytesSent, frameWidth: s.frameWidth };
    }
  });
  return result;
};

async function publish() {
  report("media", "Asking for the camera and microphone…");
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 640, height: 360 },
    audio: true,
  });
  preview.srcObject = stream;

  const pc = new RTCPeerConnection({ iceServers: [] });
  window.sabaqPeerConnection = pc;
  pc.addEventListener("connectionstatechange", () => {
    window.sabaqConnectionState = pc.connectionState;
    if (pc.connectionState === "connected") {
      report("connected", "Publishing camera and microphone.");
    } else if (pc.connectionState === "failed") {
      window.sabaqError = "the connection to the media server failed";
      report("failed", "Connection to the media server failed.");
    }
  });

  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }

  report("negotiating", "Connecting to the media server…");
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);

  const sources = {};
  for (const transceiver of pc.getTransceivers()) {
    const track = transceiver.sender.track;
    if (track && transceiver.mid !== null) {
      sources[transceiver.mid] = SOURCE_OF_KIND[track.kind];
    }
  }
  const answer = await postJson("publish", { sdp: pc.localDescription.sdp, sources });
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  if (pc.connectionState !== "connected") {
    report("answered", "Connecting to the media server…");
  }
}

publish().catch((error) => {
  window.sabaqError = String(error && error.message ? error.message : error);
  report("failed", `Could not publish: ${window.sabaqError}`);
});
