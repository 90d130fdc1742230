// The lesson's chat beside the recording, each message appearing when the
// playback passes the moment it was written.
//
// Messages come from GET /api/recordings/{id}/chat (pages of 500, oldest first), which
// admits whoever may watch the recording.
// The list is an aria-live region, so a screen reader reads a message as it
// appears; a seek that adds or removes many messages at once is done with the
// region silenced, so nobody hears a hundred messages in a row.

import { h } from "./dom.js";
import { setText } from "./i18n.js";
import { chatSchedule, dueCount, formatClock } from "./recording-timeline.js";

const PAGE = 500;
// Most pages read (250 000 messages): a lesson never has that many; a loop must end.
const MAX_PAGES = 500;
// Within this many pixels of the bottom the list follows new messages.
const STICKY_PX = 48;

// Every message of the lesson; throws {status} when the server refuses.
export async function fetchChat(recordingId, token) {
  const messages = [];
  let after = 0;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const url = `/api/recordings/${encodeURIComponent(recordingId)}/chat?after=${after}&limit=${PAGE}`;
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) {
      const error = new Error(`chat: ${response.status}`);
      error.status = response.status;
      throw error;
    }
    const body = await response.json();
    const batch = Array.isArray(body.messages) ? body.messages : [];
    messages.push(...batch);
    if (batch.length < PAGE) {
      break;
    }
    after = batch[batch.length - 1].id;
  }
  return messages;
}

export class RecordingChat {
  // list: the <ol>; status: a <p> for "no messages" and errors; onSeek(t) jumps the player.
  constructor({ list, status, onSeek }) {
    this.list = list;
    this.status = status;
    this.onSeek = onSeek;
    this.schedule = [];
    this.shown = 0;
    this.lastPosition = 0;
  }

  load(messages, startedAt) {
    this.schedule = chatSchedule(messages, startedAt);
    this.list.replaceChildren();
    this.shown = 0;
    if (this.schedule.length === 0) {
      setText(this.status, "recordings.chat_empty");
      this.status.hidden = false;
    } else {
      this.status.hidden = true;
    }
    this.update(this.lastPosition, { quiet: true });
  }

  unavailable() {
    setText(this.status, "recordings.chat_unavailable");
    this.status.hidden = false;
  }

  row({ message, at }) {
    const clock = formatClock(at);
    const jump = h("button", {
      type: "button",
      class: "rec-msg-time small",
      text: clock,
      i18nLabel: "recordings.chat_goto",
      args: { time: clock },
      onclick: () => this.onSeek(at),
    });
    return h(
      "li",
      { class: "msg", dataset: { at: String(at), id: String(message.id) } },
      h("div", { class: "msg-meta" }, jump, h("strong", { class: "msg-name", text: message.name })),
      h("p", { class: "msg-text", text: message.text }),
    );
  }

  // Shows exactly the messages written up to `position` (seconds on the timeline).
  update(position, { quiet = false } = {}) {
    this.lastPosition = position;
    const due = dueCount(this.schedule, position);
    if (due === this.shown) {
      return;
    }
    const jumped = quiet || Math.abs(due - this.shown) > 3;
    if (jumped) {
      this.list.setAttribute("aria-live", "off");
    }
    const list = this.list;
    const follow = list.scrollHeight - list.scrollTop - list.clientHeight < STICKY_PX;
    if (due > this.shown) {
      const rows = this.schedule.slice(this.shown, due).map((item) => this.row(item));
      list.append(...rows);
    } else {
      while (list.children.length > due) {
        list.lastElementChild.remove();
      }
    }
    this.shown = due;
    if (follow || jumped) {
      list.scrollTop = list.scrollHeight;
    }
    if (jumped) {
      // Back on after this turn, so that only what comes from playing is announced.
      setTimeout(() => list.setAttribute("aria-live", "polite"), 0);
    }
  }
}
