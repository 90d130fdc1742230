// The recording's timeline, without the DOM: lanes of track files, the chat's
// schedule and the stretches actually watched.
//
// A recording is a set of parts (track files), each placed on one timeline at
// its start_offset_s (GET /api/recordings/{id}). The player shows three lanes:
// the teacher's camera, the shared screen and the sound (the teacher's
// microphone first: it is the master clock); a participant who republished has
// several parts in a lane, with gaps between them.

// Seconds a part whose duration is not known yet is assumed to run: to the end.
const OPEN_END = Number.POSITIVE_INFINITY;

function segmentOf(part) {
  const start = Number(part.start_offset_s) || 0;
  const duration = Number(part.duration_s);
  return {
    partId: part.id,
    url: part.url,
    start,
    end: Number.isFinite(duration) && duration > 0 ? start + duration : OPEN_END,
    participant: part.participant_id,
    name: part.participant_name,
    teacher: Boolean(part.teacher),
  };
}

// One lane: the parts of one source (and one person, for sound), by start.
export class Lane {
  constructor(key, source, segments) {
    this.key = key;
    this.source = source;
    this.segments = segments.slice().sort((a, b) => a.start - b.start);
  }

  // The segment that covers time t (the latest-starting one if parts overlap), or null.
  at(t) {
    let found = null;
    for (const segment of this.segments) {
      if (segment.start > t) {
        break;
      }
      if (t < segment.end) {
        found = segment;
      }
    }
    return found;
  }

  // The segment of this part id (to refresh a URL in place).
  byPart(partId) {
    return this.segments.find((segment) => segment.partId === partId) || null;
  }
}

function playable(part, source) {
  return part.source === source && typeof part.url === "string" && part.url !== "";
}

function teachersFirst(parts) {
  const teachers = parts.filter((part) => part.teacher);
  return teachers.length ? teachers : parts;
}

// {camera, screen, audio: [Lane]} from a recording: the camera lane holds the
// teachers' cameras (anyone's if no teacher's was recorded), the screen lane
// every shared screen, and there is one sound lane per person, teachers first.
export function buildLanes(recording) {
  const parts = Array.isArray(recording.parts) ? recording.parts : [];
  const cameras = teachersFirst(parts.filter((part) => playable(part, "camera")));
  const screens = parts.filter((part) => playable(part, "screen"));
  const microphones = parts.filter((part) => playable(part, "microphone"));
  const people = new Map();
  for (const part of microphones) {
    if (!people.has(part.participant_id)) {
      people.set(part.participant_id, []);
    }
    people.get(part.participant_id).push(part);
  }
  const audio = [...people.entries()]
    .sort(([, a], [, b]) => Number(Boolean(b[0].teacher)) - Number(Boolean(a[0].teacher)))
    .map(([person, list]) => new Lane(`microphone:${person}`, "microphone", list.map(segmentOf)));
  return {
    camera: cameras.length ? new Lane("camera", "camera", cameras.map(segmentOf)) : null,
    screen: screens.length ? new Lane("screen", "screen", screens.map(segmentOf)) : null,
    audio,
  };
}

// The timeline's length: the recording's duration, else where its last finite part ends.
export function timelineLength(recording, lanes) {
  const duration = Number(recording.duration_s);
  if (Number.isFinite(duration) && duration > 0) {
    return duration;
  }
  let end = 0;
  for (const lane of [lanes.camera, lanes.screen, ...lanes.audio]) {
    for (const segment of lane ? lane.segments : []) {
      if (Number.isFinite(segment.end)) {
        end = Math.max(end, segment.end);
      }
    }
  }
  return end;
}

// "1:02:03" or "2:03": a position for people to read.
export function formatClock(seconds) {
  const whole = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// The chat messages with their moment on the timeline (seconds from the
// recording's start), in that order; messages from before the recording
// started are at 0.
export function chatSchedule(messages, startedAt) {
  const origin = Date.parse(startedAt);
  return messages
    .map((message) => ({ message, at: Math.max(0, (Date.parse(message.at) - origin) / 1000) }))
    .filter((item) => Number.isFinite(item.at))
    .sort((a, b) => a.at - b.at || a.message.id - b.message.id);
}

// How many of the scheduled messages are due at time t (a binary search).
export function dueCount(schedule, t) {
  let low = 0;
  let high = schedule.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (schedule[mid].at <= t) {
      low = mid + 1;
    } else {
      high = mid;
    }
  }
  return low;
}

// The stretches of the timeline that were played. Each observation while
// playing extends the open stretch if the position moved forward by no more
// than playback could have (so a seek starts a new stretch instead of
// counting the skipped part); pausing closes it. take() hands over what was
// watched since the last take and keeps the open stretch going.
export class WatchTracker {
  constructor() {
    this.closed = [];
    this.open = null; // [from, to]
    this.lastWall = 0;
  }

  // `t` timeline seconds, `wall` performance.now() milliseconds, `rate` the playback rate.
  observe(t, wall, rate) {
    if (!Number.isFinite(t)) {
      return;
    }
    if (this.open) {
      const [, to] = this.open;
      const elapsed = Math.max(0, (wall - this.lastWall) / 1000);
      // A second of slack: timers are late, and media clocks move in steps.
      const reachable = to + elapsed * Math.max(rate, 1) + 1;
      if (t >= to - 0.05 && t <= reachable) {
        this.open[1] = Math.max(to, t);
        this.lastWall = wall;
        return;
      }
      this.close();
    }
    this.open = [t, t];
    this.lastWall = wall;
  }

  // Playback stopped (pause, end, buffering, a seek starting).
  close() {
    if (this.open && this.open[1] - this.open[0] > 0.01) {
      this.closed.push(this.open);
    }
    this.open = null;
  }

  // What was watched since the last take, merged and rounded to ms; the open
  // stretch is reported up to now and continues from there.
  take() {
    const stretches = this.closed.slice();
    this.closed = [];
    if (this.open && this.open[1] - this.open[0] > 0.01) {
      stretches.push(this.open.slice());
      this.open = [this.open[1], this.open[1]];
    }
    return mergeIntervals(stretches);
  }

  // Puts back what could not be sent (the next take sends it again).
  restore(intervals) {
    this.closed.push(...intervals.map((pair) => pair.slice()));
  }
}

export function mergeIntervals(intervals) {
  const sorted = intervals
    .filter((pair) => pair[1] > pair[0])
    .sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [from, to] of sorted) {
    const last = merged[merged.length - 1];
    if (last && from <= last[1]) {
      last[1] = Math.max(last[1], to);
    } else {
      merged.push([from, to]);
    }
  }
  const round = (x) => Math.round(x * 1000) / 1000;
  return merged.map(([from, to]) => [round(from), round(to)]).filter(([from, to]) => to > from);
}
