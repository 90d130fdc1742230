// The participant list (with the moderators' buttons) and the lobby list.
//
// Rows are built once per participant and updated in place: `updated`
// messages arrive several times a second while people speak, and a rebuilt
// row would take the keyboard focus away from the button someone is on.

import { h } from "./dom.js";
import { setLabel, setText } from "./i18n.js";
import { isModerator } from "./protocol.js";

const ROLE_ORDER = { teacher: 0, admin: 1, assistant: 2, student: 3, observer: 4 };
const MEDIA_SOURCES = ["microphone", "camera", "screen"];

function compare(a, b) {
  const role = (ROLE_ORDER[a.role] ?? 5) - (ROLE_ORDER[b.role] ?? 5);
  if (role !== 0) {
    return role;
  }
  // Raised hands come first among students, so the teacher sees them at once.
  if (a.hand !== b.hand) {
    return a.hand ? -1 : 1;
  }
  return String(a.name).localeCompare(String(b.name));
}

export function roleKey(role) {
  return `role.${ROLE_ORDER[role] === undefined ? "unknown" : role}`;
}

// actions: {giveFloor(id, sources), takeFloor(id), lowerHand(id), mute(id, source), remove(participant)}
export class ParticipantList {
  constructor({ list, count, actions }) {
    this.list = list;
    this.count = count;
    this.actions = actions;
    this.rows = new Map();
    this.you = null;
  }

  // `changedId`: only this participant changed (an `updated`), so only its
  // row is redrawn, and the list re-sorted only if its place may have moved.
  render(participants, you, changedId = null) {
    const youChanged = !this.you || !you || this.you.role !== you.role;
    this.you = you;
    const row = changedId && !youChanged ? this.rows.get(changedId) : null;
    if (row && participants.has(changedId)) {
      const before = row.participant;
      const after = participants.get(changedId);
      this.updateRow(row, after);
      if (before.hand === after.hand && before.role === after.role && before.name === after.name) {
        return;
      }
    }
    const people = [...participants.values()].sort(compare);
    const present = new Set(people.map((p) => p.id));
    for (const [id, row] of this.rows) {
      if (!present.has(id)) {
        row.element.remove();
        this.rows.delete(id);
      }
    }
    for (const participant of people) {
      let row = this.rows.get(participant.id);
      if (!row) {
        row = this.makeRow(participant);
        this.rows.set(participant.id, row);
      }
      this.updateRow(row, participant);
    }
    this.reorder(people.map((p) => this.rows.get(p.id).element));
    this.count.textContent = String(people.length);
  }

  // Moves rows only when the order changed (moving a node can drop its focus).
  reorder(elements) {
    const current = [...this.list.children];
    if (current.length === elements.length && current.every((e, i) => e === elements[i])) {
      return;
    }
    const focused = document.activeElement;
    this.list.append(...elements);
    if (focused && focused !== document.activeElement && this.list.contains(focused)) {
      focused.focus();
    }
  }

  makeRow(p) {
    const id = p.id;
    const name = h("span", { class: "person-name" });
    const role = h("span", { class: "badge role" });
    const youMark = h("span", { class: "badge you", i18n: "people.you", hidden: true });
    const hand = h("span", { class: "badge hand", i18n: "people.hand_raised", hidden: true });
    const speaking = h("span", { class: "badge speaking", i18n: "people.speaking", hidden: true });
    const floor = h("span", { class: "badge floor", hidden: true });
    const quality = h("span", { class: "badge quality", hidden: true });
    const media = {};
    for (const source of MEDIA_SOURCES) {
      media[source] = h("span", { class: `badge media ${source}`, hidden: true });
    }
    const button = (testid, key, onclick, extra = "") =>
      h("button", { type: "button", class: `small ${extra}`, testid: `${testid}-${id}`, i18n: key, onclick });
    const buttons = {
      floorMic: button("floor-mic", "people.give_mic", () => this.actions.giveFloor(id, ["microphone"])),
      floorAv: button("floor-av", "people.give_av", () =>
        this.actions.giveFloor(id, ["microphone", "camera"]),
      ),
      takeFloor: button("take-floor", "people.take_floor", () => this.actions.takeFloor(id)),
      lowerHand: button("lower-hand", "people.lower_hand", () => this.actions.lowerHand(id)),
      mute: button("mute", "people.mute", () => this.actions.mute(id, "microphone")),
      muteCamera: button("mute-camera", "people.mute_camera", () => this.actions.mute(id, "camera")),
      remove: button("remove", "people.remove", () => this.actions.remove(this.rows.get(id).participant), "quiet-danger"),
    };
    const actions = h("div", { class: "person-actions", role: "group" }, ...Object.values(buttons));
    const element = h(
      "li",
      { class: "person", testid: `participant-${id}`, dataset: { hand: "false", speaking: "false" } },
      h("div", { class: "person-line" }, name, role, youMark),
      h("div", { class: "person-status" }, hand, speaking, ...Object.values(media), floor, quality),
      actions,
    );
    this.list.append(element);
    return { element, name, role, youMark, hand, speaking, floor, quality, media, buttons, actions, participant: p };
  }

  updateRow(row, p) {
    row.participant = p;
    const self = this.you && p.id === this.you.id;
    row.element.dataset.hand = p.hand ? "true" : "false";
    row.element.dataset.speaking = p.speaking ? "true" : "false";
    row.element.dataset.role = p.role;
    row.name.textContent = p.name;
    setText(row.role, roleKey(p.role));
    row.youMark.hidden = !self;
    row.hand.hidden = !p.hand;
    row.speaking.hidden = !p.speaking;
    const mediaState = p.media || {};
    for (const source of MEDIA_SOURCES) {
      const state = mediaState[source] || "off";
      const badge = row.media[source];
      badge.hidden = state === "off";
      badge.dataset.state = state;
      if (state !== "off") {
        setText(badge, `media.${source}.${state}`);
      }
    }
    const floor = p.floor || [];
    row.floor.hidden = p.role !== "student" || floor.length === 0;
    if (floor.length > 0) {
      setText(row.floor, floor.includes("camera") ? "people.floor_av" : "people.floor_mic");
    }
    // Quality is sent to moderators (and to oneself) only; others see null.
    row.quality.hidden = !p.quality || p.quality === "good";
    if (p.quality) {
      row.quality.dataset.level = p.quality;
      setText(row.quality, `quality.${p.quality}`);
    }
    this.updateActions(row, p, self);
  }

  updateActions(row, p, self) {
    const me = this.you;
    const moderating = me && isModerator(me.role) && !self;
    row.actions.hidden = !moderating;
    if (!moderating) {
      return;
    }
    const student = p.role === "student";
    const floor = p.floor || [];
    const media = p.media || {};
    const b = row.buttons;
    b.floorMic.hidden = !student;
    b.floorAv.hidden = !student;
    b.takeFloor.hidden = !student || floor.length === 0;
    b.lowerHand.hidden = !p.hand;
    b.mute.hidden = media.microphone !== "on";
    b.muteCamera.hidden = media.camera !== "on";
    // Only a teacher or admin may remove another moderator.
    b.remove.hidden = isModerator(p.role) && !["teacher", "admin"].includes(me.role);
    const args = { name: p.name };
    setLabel(b.floorMic, "people.give_mic_to", args);
    setLabel(b.floorAv, "people.give_av_to", args);
    setLabel(b.takeFloor, "people.take_floor_from", args);
    setLabel(b.lowerHand, "people.lower_hand_of", args);
    setLabel(b.mute, "people.mute_of", args);
    setLabel(b.muteCamera, "people.mute_camera_of", args);
    setLabel(b.remove, "people.remove_who", args);
    setLabel(row.actions, "people.actions_for", args);
  }
}

// The moderators' view of the lobby: who waits, with Admit / Deny.
export class LobbyList {
  constructor({ panel, list, count, admitAll, actions }) {
    this.panel = panel;
    this.list = list;
    this.count = count;
    this.admitAll = admitAll;
    this.actions = actions;
    this.lobby = [];
    admitAll.addEventListener("click", () => {
      for (const entry of this.lobby) {
        this.actions.admit(entry.id);
      }
    });
  }

  render(lobby, you) {
    this.lobby = lobby || [];
    const moderating = you && isModerator(you.role);
    this.panel.hidden = !moderating || this.lobby.length === 0;
    this.count.textContent = String(this.lobby.length);
    this.admitAll.hidden = this.lobby.length < 2;
    const rows = this.lobby.map((entry) => {
      const args = { name: entry.name };
      return h(
        "li",
        { class: "person lobby-entry", testid: `lobby-${entry.id}` },
        h(
          "div",
          { class: "person-line" },
          h("span", { class: "person-name", text: entry.name }),
          h("span", { class: "badge role", i18n: roleKey(entry.role) }),
        ),
        h(
          "div",
          { class: "person-actions" },
          h("button", {
            type: "button",
            class: "small primary",
            testid: `admit-${entry.id}`,
            i18n: "lobby.admit",
            i18nLabel: "lobby.admit_who",
            args,
            onclick: () => this.actions.admit(entry.id),
          }),
          h("button", {
            type: "button",
            class: "small danger",
            testid: `deny-${entry.id}`,
            i18n: "lobby.deny",
            i18nLabel: "lobby.deny_who",
            args,
            onclick: () => this.actions.deny(entry.id),
          }),
        ),
      );
    });
    // The lobby changes rarely and its rows hold no state worth keeping.
    const focusedTestId = document.activeElement && document.activeElement.dataset.testid;
    this.list.replaceChildren(...rows);
    if (focusedTestId) {
      const again = this.list.querySelector(`[data-testid="${CSS.escape(focusedTestId)}"]`);
      if (again) {
        again.focus();
      }
    }
  }
}
