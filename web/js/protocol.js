// The browser side of the classroom protocol (docs/protocol.md), with no DOM code.
//
// One WebSocket carries everything but media; media flows over two peer
// connections set up through it: a *publishing* one that this client offers
// (one sendonly transceiver per source: camera, microphone, screen) and a
// *subscribing* one that the server offers and renegotiates as tracks come
// and go. ICE is not trickled: every offer and answer is sent once gathering
// is complete, so it carries all its candidates (the server needs no `ice`).
//
// The client keeps the lesson's state (`client.state`) and tells the UI what
// changed through events (CustomEvent, details in brackets):
//
//   state         {state: connecting|connected|reconnecting|closed, code, reason, delay, attempt}
//   welcome       {you, lesson, participants, chat, lobby, recording}
//   lobby         {you, lesson}                  you wait in the lesson's lobby
//   lobbychanged  {lobby}                        moderators: who waits in the lobby
//   participants  {participants, change: {kind: welcome|joined|left|updated, participant, previous, reason}}
//   chat          {message}
//   floor         {sources, by, revoked}         your floor changed
//   muted         {source, by}                   a moderator stopped your source
//   quality       {level, loss, rtt_ms, bitrate_bps}
//   recording     {active}
//   track         {track, participant, source, mid, trackId}   a remote track arrived
//   trackended    {track, participant, source, mid, trackId}   ... and went away
//   local         {published}                    what this client publishes changed
//   error         {code, message}                an error that answers no request of ours
//
// Requests return promises; a server `error` rejects them with a
// ProtocolError whose `code` is the protocol's error code. Local failures use
// codes of their own: not_connected, disconnected, timeout, bad_source.

export const SUBPROTOCOL = "sabaq.v1";
export const CLIENT_NAME = "sabaq-web/1";
export const SOURCES = Object.freeze(["camera", "microphone", "screen"]);
export const MODERATOR_ROLES = Object.freeze(["teacher", "assistant", "admin"]);

// Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes").
// Every other code (1001, 1006, 1011, 4408, anything unknown) is retried.
export const FINAL_CLOSE_CODES = Object.freeze([
  1000, 1002, 1003, 1009, 4000, 4401, 4403, 4404, 4409, 4410, 4429,
]);

const SOURCE_KIND = { camera: "video", microphone: "audio", screen: "video" };
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 10000;
const REQUEST_TIMEOUT_MS = 20000;
// A host-candidates-only gathering takes milliseconds; a long wait means a
// network interface that never answers, and what was gathered is sent anyway.
const GATHERING_TIMEOUT_MS = 5000;
// The server closes with 1000 after `leave`; if it cannot, we close ourselves.
const LEAVE_GRACE_MS = 2000;
// The chat list is bounded so that a long lesson does not grow memory without end.
const CHAT_KEEP = 500;
const CHAT_MAX_CHARS = 2000;

export class ProtocolError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "ProtocolError";
    this.code = code;
  }
}

export function isModerator(role) {
  return MODERATOR_ROLES.includes(role);
}

// May this participant publish `source` now? Moderators always; a student
// only what the floor lists; observers never (the server enforces it too).
export function canPublish(participant, source) {
  if (!participant || !SOURCES.includes(source)) {
    return false;
  }
  if (isModerator(participant.role)) {
    return true;
  }
  return participant.role === "student" && (participant.floor || []).includes(source);
}

export function defaultWsUrl(lessonId, loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws/lessons/${encodeURIComponent(lessonId)}`;
}

export function backoffDelay(attempt) {
  return Math.min(BACKOFF_FIRST_MS * 2 ** attempt, BACKOFF_MAX_MS);
}

// Resolves when ICE gathering is complete (or after a timeout), so that the
// SDP we send carries every candidate.
function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") {
        done();
      }
    };
    const timer = setTimeout(done, GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

// Runs async jobs one after another: a peer connection negotiates one offer at a time.
class Serial {
  constructor() {
    this.tail = Promise.resolve();
  }

  run(job) {
    const result = this.tail.then(job);
    this.tail = result.catch(() => {});
    return result;
  }
}

export class LessonClient extends EventTarget {
  constructor({ lessonId, token, wsUrl, iceServers, clientName } = {}) {
    super();
    if (!lessonId) {
      throw new TypeError("LessonClient needs a lessonId");
    }
    this.lessonId = lessonId;
    this.token = token || "";
    this.wsUrl = wsUrl || defaultWsUrl(lessonId);
    this.clientName = clientName || CLIENT_NAME;
    // Never a public STUN server: only what the constructor or `welcome` gives.
    this.defaultIceServers = Array.isArray(iceServers) ? iceServers : [];
    this.iceServers = this.defaultIceServers;

    this.state = {
      connection: "idle", // idle | connecting | connected | reconnecting | closed
      closeCode: null,
      closeReason: "",
      waiting: false, // in the lobby
      you: null,
      lesson: null,
      participants: new Map(),
      lobby: [],
      chat: [],
      floor: [],
      recording: false,
      quality: null,
    };

    // source -> {track, muted, transceiver}: what we publish, kept across reconnections.
    this.local = new Map();
    // mid -> {track, participant, source, mid, trackId}: what we receive.
    this.remote = new Map();

    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._attempt = 0;
    this._retryTimer = null;
    this._leaveTimer = null;
    this._leaving = false;
    this._everJoined = false;
    // Bumped on every new socket, so late work of an old session is dropped.
    this._session = 0;
    this._publishPc = null;
    this._subscribePc = null;
    this._publishJobs = new Serial();
    this._subscribeJobs = new Serial();
    this._onOnline = () => this._retryNow();
  }

  // --- connection ----------------------------------------------------------

  connect() {
    if (this._ws || this.state.connection === "closed") {
      return;
    }
    globalThis.addEventListener?.("online", this._onOnline);
    this._open();
  }

  // Leaves the lesson: the server closes with 1000 and the client does not reconnect.
  leave() {
    this._leaving = true;
    clearTimeout(this._retryTimer);
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      this._send({ type: "leave" });
      this._leaveTimer = setTimeout(() => ws.close(1000, "left"), LEAVE_GRACE_MS);
    } else {
      if (ws) {
        this._detach(ws);
        ws.close(1000, "left");
      }
      this._onClosed(1000, "left");
    }
  }

  get connected() {
    return this._ws !== null && this._ws.readyState === WebSocket.OPEN;
  }

  get you() {
    return this.state.you;
  }

  _open() {
    this._session += 1;
    this._setConnection(this._everJoined ? "reconnecting" : "connecting", {
      attempt: this._attempt,
    });
    let ws;
    try {
      ws = new WebSocket(this.wsUrl, [SUBPROTOCOL]);
    } catch (error) {
      this._onClosed(1006, String(error && error.message ? error.message : error));
      return;
    }
    this._ws = ws;
    ws.addEventListener("open", () => {
      if (this._ws === ws) {
        this._send({ type: "join", token: this.token, client: this.clientName });
      }
    });
    ws.addEventListener("message", (event) => {
      if (this._ws === ws) {
        this._onMessage(event.data);
      }
    });
    // An `error` event is always followed by `close` (code 1006), which does the work.
    ws.addEventListener("close", (event) => {
      if (this._ws === ws) {
        this._onClosed(event.code, event.reason);
      }
    });
  }

  _detach(ws) {
    if (this._ws === ws) {
      this._ws = null;
    }
  }

  _onClosed(code, reason) {
    this._ws = null;
    clearTimeout(this._leaveTimer);
    this.state.closeCode = code;
    this.state.closeReason = reason || "";
    this._endSession();
    if (this._leaving || FINAL_CLOSE_CODES.includes(code)) {
      this._finish(code, reason);
      return;
    }
    const delay = backoffDelay(this._attempt);
    this._attempt += 1;
    this._setConnection("reconnecting", { code, reason, delay, attempt: this._attempt });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  // The network came back: no reason to sit out the rest of the backoff.
  _retryNow() {
    if (this.state.connection === "reconnecting" && this._ws === null && !this._leaving) {
      clearTimeout(this._retryTimer);
      this._open();
    }
  }

  // Reconnect at once (a failed peer connection): the new socket's `join`
  // replaces this session on the server.
  _restart(reason) {
    const ws = this._ws;
    if (!ws || this._leaving) {
      return;
    }
    this._detach(ws);
    ws.close(4000 + 999, reason.slice(0, 100));
    this._onClosed(1006, reason);
  }

  _finish(code, reason) {
    clearTimeout(this._retryTimer);
    globalThis.removeEventListener?.("online", this._onOnline);
    for (const entry of this.local.values()) {
      entry.track.stop();
    }
    this.local.clear();
    this._emit("local", { published: this.published() });
    this._setConnection("closed", { code, reason: reason || "" });
  }

  // Everything bound to one socket goes with it: pending requests, both peer
  // connections (a new session negotiates new ones) and the remote tracks.
  _endSession() {
    this._session += 1;
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new ProtocolError("disconnected", "the connection to the lesson was lost"));
      this._pending.delete(id);
    }
    for (const info of this.remote.values()) {
      this._emit("trackended", info);
    }
    this.remote.clear();
    for (const pc of [this._publishPc, this._subscribePc]) {
      if (pc) {
        pc.close();
      }
    }
    this._publishPc = null;
    this._subscribePc = null;
    this._publishJobs = new Serial();
    this._subscribeJobs = new Serial();
    for (const entry of this.local.values()) {
      entry.transceiver = null;
    }
  }

  _setConnection(connection, extra = {}) {
    this.state.connection = connection;
    this._emit("state", { state: connection, ...extra });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _send(message) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    ws.send(JSON.stringify(message));
    return true;
  }

  // Sends a message with an `id` and resolves with the server's `ok`/`answer`.
  _request(message, timeoutMs = REQUEST_TIMEOUT_MS) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ProtocolError("not_connected", "not connected to the lesson"));
    }
    const id = this._nextId;
    this._nextId += 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ProtocolError("timeout", `no reply to ${message.type}`));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...message, id }));
    });
  }

  // --- incoming messages -----------------------------------------------------

  _onMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") {
      return;
    }
    const handler = this._handlers[message.type];
    // Unknown types are ignored: a newer server keeps working with this client.
    if (handler) {
      handler.call(this, message);
    }
  }

  _reply(message) {
    const pending = this._pending.get(message.id);
    if (!pending) {
      return false;
    }
    this._pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.type === "error") {
      pending.reject(new ProtocolError(message.code || "unknown", message.message));
    } else {
      pending.resolve(message);
    }
    return true;
  }

  _joined() {
    this._attempt = 0;
    this._everJoined = true;
  }

  _setParticipant(participant) {
    const previous = this.state.participants.get(participant.id) || null;
    this.state.participants.set(participant.id, participant);
    if (this.state.you && participant.id === this.state.you.id) {
      this.state.you = participant;
      this.state.floor = participant.floor || [];
    }
    return previous;
  }

  // --- publishing -------------------------------------------------------------

  // What this client publishes: {source: "on" | "muted"} (absent means off).
  published() {
    const result = {};
    for (const [source, entry] of this.local) {
      result[source] = entry.muted ? "muted" : "on";
    }
    return result;
  }

  localTrack(source) {
    const entry = this.local.get(source);
    return entry ? entry.track : null;
  }

  // Publishes tracks by source, e.g. publish({camera: videoTrack, microphone: audioTrack}).
  // The client owns the tracks from then on: it stops them when they are
  // unpublished, taken away by the floor, or the lesson is left. A track for a
  // source already published replaces it without renegotiation.
  // If publishing fails, the tracks given are stopped as well.
  publish(tracks) {
    const entries = Object.entries(tracks || {}).filter(([, track]) => track);
    const refuse = (code, message) => {
      for (const [, track] of entries) {
        track.stop();
      }
      return Promise.reject(new ProtocolError(code, message));
    };
    for (const [source, track] of entries) {
      if (!SOURCES.includes(source) || track.kind !== SOURCE_KIND[source]) {
        return refuse("bad_source", `cannot publish a ${track.kind} track as ${source}`);
      }
    }
    if (!this.connected || !this.state.you) {
      return refuse("not_connected", "not in the lesson yet");
    }
    if (this.state.waiting) {
      return refuse("in_lobby", "still waiting in the lobby");
    }
    return this._publishJobs.run(async () => {
      const added = [];
      for (const [source, track] of entries) {
        const entry = this.local.get(source);
        if (entry && entry.track === track) {
          continue;
        }
        if (entry && entry.transceiver && this._publishPc && entry.transceiver.currentDirection) {
          // Already negotiated: swap the track in place, no new offer needed.
          await entry.transceiver.sender.replaceTrack(track);
          entry.track.stop();
          entry.track = track;
          track.enabled = !entry.muted;
          continue;
        }
        if (entry) {
          entry.track.stop();
        }
        this.local.set(source, { track, muted: false, transceiver: entry ? entry.transceiver : null });
        added.push(source);
      }
      if (added.length > 0) {
        try {
          await this._negotiatePublish();
        } catch (error) {
          // The connection dropped meanwhile: keep the tracks, the next
          // session's `welcome` publishes them again (see _republish).
          if (error.code !== "disconnected" || this.state.connection === "closed") {
            for (const source of added) {
              this._dropLocal(source);
            }
            throw error;
          }
        }
      }
      this._emit("local", { published: this.published() });
    });
  }

  // Stops publishing a source: the server stops forwarding it, the track is
  // stopped and its transceiver is left inactive, to be reused by the next
  // track of the same kind (its m-line goes inactive in the next offer; a
  // stopped, rejected m-line would only grow the SDP).
  unpublish(source) {
    if (!this.local.has(source)) {
      return Promise.resolve();
    }
    return this._publishJobs.run(async () => {
      this._dropLocal(source);
      this._emit("local", { published: this.published() });
      if (this.connected) {
        await this._request({ type: "unpublish", source });
      }
    });
  }

  // Pauses or resumes a published source (the mute buttons): the track is
  // disabled locally (silence / black frames) and the server stops forwarding it.
  // While reconnecting only the local state changes; republishing restores it.
  async setMuted(source, muted) {
    const entry = this.local.get(source);
    if (!entry) {
      throw new ProtocolError("not_found", `${source} is not published`);
    }
    entry.muted = Boolean(muted);
    entry.track.enabled = !entry.muted;
    this._emit("local", { published: this.published() });
    if (this.connected && !this.state.waiting) {
      await this._request({ type: "media", source, muted: entry.muted });
    }
  }

  _dropLocal(source) {
    const entry = this.local.get(source);
    if (!entry) {
      return;
    }
    this.local.delete(source);
    entry.track.stop();
    const transceiver = entry.transceiver;
    if (transceiver && this._publishPc && transceiver.currentDirection !== "stopped") {
      transceiver.sender.replaceTrack(null).catch(() => {});
      transceiver.direction = "inactive";
    }
  }

  _ensurePublishPc() {
    if (this._publishPc) {
      return this._publishPc;
    }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this._watchPc(pc, "publish");
    this._publishPc = pc;
    return pc;
  }

  // A transceiver of this kind that no source uses any more.
  _freeTransceiver(pc, kind) {
    const used = new Set([...this.local.values()].map((e) => e.transceiver).filter(Boolean));
    return pc
      .getTransceivers()
      .find(
        (t) =>
          !used.has(t) &&
          t.currentDirection !== "stopped" &&
          t.receiver.track.kind === kind &&
          t.direction === "inactive",
      );
  }

  async _negotiatePublish() {
    const session = this._session;
    const pc = this._ensurePublishPc();
    for (const entry of this.local.values()) {
      if (entry.transceiver && pc.getTransceivers().includes(entry.transceiver)) {
        if (entry.transceiver.sender.track !== entry.track) {
          await entry.transceiver.sender.replaceTrack(entry.track);
        }
        entry.transceiver.direction = "sendonly";
        continue;
      }
      const free = this._freeTransceiver(pc, entry.track.kind);
      if (free) {
        await free.sender.replaceTrack(entry.track);
        free.direction = "sendonly";
        entry.transceiver = free;
      } else {
        entry.transceiver = pc.addTransceiver(entry.track, { direction: "sendonly" });
      }
      entry.track.enabled = !entry.muted;
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    this._checkSession(session);
    const sources = {};
    for (const [source, entry] of this.local) {
      if (entry.transceiver && entry.transceiver.mid !== null) {
        sources[entry.transceiver.mid] = source;
      }
    }
    let reply;
    try {
      reply = await this._request({ type: "publish", sdp: pc.localDescription.sdp, sources });
    } catch (error) {
      // Back to the last agreed state, so that the next offer starts clean.
      if (this._publishPc === pc && pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
      }
      throw error;
    }
    this._checkSession(session);
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    // A (re)published source starts "on" on the server; restore "muted".
    for (const [source, entry] of this.local) {
      if (entry.muted) {
        this._request({ type: "media", source, muted: true }).catch(() => {});
      }
    }
  }

  _checkSession(session) {
    if (session !== this._session) {
      throw new ProtocolError("disconnected", "the connection to the lesson was lost");
    }
  }

  // After (re)joining: publish again what was published before, where still allowed.
  _republish() {
    const you = this.state.you;
    for (const source of [...this.local.keys()]) {
      if (!canPublish(you, source)) {
        this._dropLocal(source);
      }
    }
    if (this.local.size === 0) {
      this._emit("local", { published: this.published() });
      return;
    }
    this._publishJobs
      .run(() => this._negotiatePublish())
      .then(() => this._emit("local", { published: this.published() }))
      .catch((error) => {
        if (error.code === "disconnected") {
          return; // the next session tries again
        }
        for (const source of [...this.local.keys()]) {
          this._dropLocal(source);
        }
        this._emit("local", { published: this.published() });
        this._emit("error", { code: error.code || "negotiation_failed", message: error.message });
      });
  }

  // The floor no longer lists these sources: the server already stopped them.
  _revoke(sources) {
    const revoked = [];
    for (const source of [...this.local.keys()]) {
      if (!sources.includes(source) && !isModerator(this.state.you && this.state.you.role)) {
        this._dropLocal(source);
        revoked.push(source);
      }
    }
    if (revoked.length > 0) {
      this._emit("local", { published: this.published() });
    }
    return revoked;
  }

  // --- subscribing ----------------------------------------------------------

  _ensureSubscribePc() {
    if (this._subscribePc) {
      return this._subscribePc;
    }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this._watchPc(pc, "subscribe");
    this._subscribePc = pc;
    return pc;
  }

  async _answerOffer(message, session) {
    if (session !== this._session) {
      return;
    }
    const pc = this._ensureSubscribePc();
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await gatheringComplete(pc);
    if (session !== this._session) {
      return;
    }
    this._send({ type: "subscriber_answer", sdp: pc.localDescription.sdp });
    this._syncRemoteTracks(pc, Array.isArray(message.tracks) ? message.tracks : []);
  }

  // Compares the offer's mid -> track table with what we had: an m-line whose
  // label vanished or changed ended its track; a new label is a new track. The
  // server reuses inactive m-lines, so one receiver track may carry another
  // publisher's media later: `trackended` always comes before its new `track`.
  _syncRemoteTracks(pc, tracks) {
    const labels = new Map(tracks.map((t) => [String(t.mid), t]));
    for (const [mid, info] of [...this.remote]) {
      const label = labels.get(mid);
      if (!label || label.track !== info.trackId) {
        this.remote.delete(mid);
        this._emit("trackended", info);
      }
    }
    for (const transceiver of pc.getTransceivers()) {
      const mid = transceiver.mid;
      const label = mid === null ? null : labels.get(mid);
      if (!label || this.remote.has(mid)) {
        continue;
      }
      const info = {
        track: transceiver.receiver.track,
        participant: label.participant,
        source: label.source,
        mid,
        trackId: label.track,
      };
      this.remote.set(mid, info);
      this._emit("track", info);
    }
  }

  remoteTrack(participantId, source) {
    for (const info of this.remote.values()) {
      if (info.participant === participantId && info.source === source) {
        return info;
      }
    }
    return null;
  }

  _watchPc(pc, direction) {
    pc.addEventListener("connectionstatechange", () => {
      // A failed media path does not heal by itself (no ICE restart here):
      // start a new session, which renegotiates both connections.
      if (pc.connectionState === "failed" && (pc === this._publishPc || pc === this._subscribePc)) {
        this._restart(`${direction} connection failed`);
      }
    });
  }

  // --- client -> server -------------------------------------------------------

  chat(text) {
    const trimmed = String(text || "").trim();
    if (trimmed.length === 0 || trimmed.length > CHAT_MAX_CHARS) {
      return Promise.reject(new ProtocolError("bad_request", "chat text must be 1-2000 characters"));
    }
    return this._request({ type: "chat", text: trimmed });
  }

  raiseHand(raised = true) {
    return this._request({ type: "hand", raised: Boolean(raised) });
  }

  admit(participantId) {
    return this._request({ type: "admit", participant: participantId });
  }

  deny(participantId) {
    return this._request({ type: "deny", participant: participantId });
  }

  giveFloor(participantId, sources) {
    return this._request({ type: "floor", participant: participantId, sources: [...sources] });
  }

  takeFloor(participantId) {
    return this.giveFloor(participantId, []);
  }

  lowerHand(participantId) {
    return this._request({ type: "lower_hand", participant: participantId });
  }

  mute(participantId, source = "microphone") {
    return this._request({ type: "mute", participant: participantId, source });
  }

  remove(participantId) {
    return this._request({ type: "remove", participant: participantId });
  }

  // Ends the lesson for everyone; the server closes every socket with 4000,
  // possibly before its `ok` reaches us, which counts as success too.
  /** Start or stop recording the lesson (moderators; refused when the lesson's policy is off). */
  record(active) {
    return this._request({ type: "record", active: Boolean(active) });
  }

  end() {
    return this._request({ type: "end" }).catch((error) => {
      if (this.state.closeCode === 4000) {
        return { type: "ok" };
      }
      throw error;
    });
  }

  // A JSON-friendly picture of the state, for tests and debugging.
  snapshot() {
    const s = this.state;
    return {
      connection: s.connection,
      closeCode: s.closeCode,
      closeReason: s.closeReason,
      waiting: s.waiting,
      you: s.you,
      lesson: s.lesson,
      participants: [...s.participants.values()],
      lobby: s.lobby,
      chat: s.chat,
      floor: s.floor,
      recording: s.recording,
      quality: s.quality,
      published: this.published(),
      remote: [...this.remote.values()].map(({ participant, source, mid, trackId }) => ({
        participant,
        source,
        mid,
        trackId,
      })),
    };
  }
}

// One handler per server message type (docs/protocol.md, "Server → client").
LessonClient.prototype._handlers = {
  welcome(message) {
    const s = this.state;
    this._joined();
    s.waiting = false;
    s.you = message.you || null;
    s.lesson = message.lesson || s.lesson;
    s.participants = new Map((message.participants || []).map((p) => [p.id, p]));
    if (s.you && !s.participants.has(s.you.id)) {
      s.participants.set(s.you.id, s.you);
    }
    s.floor = (s.you && s.you.floor) || [];
    s.chat = (message.chat || []).slice(-CHAT_KEEP);
    s.lobby = message.lobby || [];
    s.recording = Boolean(message.recording);
    this.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : this.defaultIceServers;
    this._setConnection("connected");
    this._emit("welcome", {
      you: s.you,
      lesson: s.lesson,
      participants: [...s.participants.values()],
      chat: s.chat,
      lobby: s.lobby,
      recording: s.recording,
    });
    this._emit("participants", { participants: s.participants, change: { kind: "welcome" } });
    this._emit("lobbychanged", { lobby: s.lobby });
    this._emit("recording", { active: s.recording });
    this._republish();
  },

  lobby(message) {
    this._joined();
    this.state.waiting = true;
    this.state.you = message.you || null;
    this.state.lesson = message.lesson || this.state.lesson;
    this._setConnection("connected");
    this._emit("lobby", { you: this.state.you, lesson: this.state.lesson });
  },

  ok(message) {
    this._reply(message);
  },

  answer(message) {
    this._reply(message);
  },

  error(message) {
    if (message.id === undefined || !this._reply(message)) {
      this._emit("error", { code: message.code || "unknown", message: message.message || "" });
    }
  },

  offer(message) {
    const session = this._session;
    this._subscribeJobs.run(() => this._answerOffer(message, session)).catch((error) => {
      this._emit("error", { code: "negotiation_failed", message: String(error && error.message) });
    });
  },

  joined(message) {
    const participant = message.participant;
    if (!participant || !participant.id) {
      return;
    }
    const previous = this._setParticipant(participant);
    const kind = previous ? "updated" : "joined";
    this._emit("participants", {
      participants: this.state.participants,
      change: { kind, participant, previous },
    });
  },

  left(message) {
    const id = message.participant;
    const previous = this.state.participants.get(id) || { id };
    this.state.participants.delete(id);
    this._emit("participants", {
      participants: this.state.participants,
      change: { kind: "left", participant: previous, reason: message.reason },
    });
  },

  updated(message) {
    const participant = message.participant;
    if (!participant || !participant.id) {
      return;
    }
    const previous = this._setParticipant(participant);
    this._emit("participants", {
      participants: this.state.participants,
      change: { kind: "updated", participant, previous },
    });
  },

  lobby_changed(message) {
    this.state.lobby = message.lobby || [];
    this._emit("lobbychanged", { lobby: this.state.lobby });
  },

  chat(message) {
    const chat = this.state.chat;
    chat.push(message.message);
    if (chat.length > CHAT_KEEP) {
      chat.splice(0, chat.length - CHAT_KEEP);
    }
    this._emit("chat", { message: message.message });
  },

  floor(message) {
    const sources = message.sources || [];
    this.state.floor = sources;
    if (this.state.you) {
      this.state.you = { ...this.state.you, floor: sources };
      this.state.participants.set(this.state.you.id, this.state.you);
    }
    const revoked = this._revoke(sources);
    this._emit("floor", { sources, by: message.by, revoked });
  },

  muted(message) {
    const entry = this.local.get(message.source);
    if (entry) {
      entry.muted = true;
      entry.track.enabled = false;
      this._emit("local", { published: this.published() });
    }
    this._emit("muted", { source: message.source, by: message.by });
  },

  quality(message) {
    const { level, loss = null, rtt_ms = null, bitrate_bps = null } = message;
    this.state.quality = { level, loss, rtt_ms, bitrate_bps };
    this._emit("quality", this.state.quality);
  },

  recording(message) {
    this.state.recording = Boolean(message.active);
    this._emit("recording", { active: this.state.recording });
  },
};
