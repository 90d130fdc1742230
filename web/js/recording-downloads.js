// The download section: the single MP4 of the lesson (made by a background job
// after the lesson; its state and progress shown, polled every 5 s while it is
// being made) and the separate track files, available as soon as each is closed.
//
// Media URLs are signed and live 10 minutes, so a click on a download link
// first asks the server for a fresh one; the href already there serves
// "copy link" and middle clicks while it lasts.

import { number } from "./admin-format.js";
import { h } from "./dom.js";
import { setLabel, setText, t } from "./i18n.js";
import { formatClock } from "./recording-timeline.js";

export const POLL_MS = 5000;

// "1.4 MB" in the page's language (number() spells Kazakh numbers the Russian way,
// which Kazakhstan shares: Chromium has no Kazakh number data).
function sizeText(bytes) {
  const value = Number(bytes);
  if (!Number.isFinite(value) || value <= 0) {
    return "";
  }
  if (value >= 1e9) {
    return t("recordings.size_gb", { n: number(value / 1e9, 1) });
  }
  if (value >= 1e6) {
    return t("recordings.size_mb", { n: number(value / 1e6, 1) });
  }
  return t("recordings.size_kb", { n: number(Math.max(1, value / 1e3), 0) });
}

// A file name people can recognise in their downloads folder.
function fileName(recording, suffix, format) {
  const title = String(recording.lesson?.title || "lesson")
    .replace(/[\\/:*?"<>|\u0000-\u001f]+/g, " ")
    .trim()
    .slice(0, 80);
  const day = String(recording.started_at || "").slice(0, 10);
  return `${title} ${day} ${suffix}.${format || "webm"}`.replace(/\s+/g, " ");
}

export class Downloads {
  // refresh(): a promise of the recording with fresh URLs (GET /api/recordings/{id}).
  constructor({ composite, parts, refresh, notice }) {
    this.composite = composite;
    this.partsList = parts;
    this.refresh = refresh;
    this.notice = notice;
    this.timer = null;
    this.statusText = composite.querySelector(".rec-composite-status");
    this.progress = composite.querySelector("progress");
    this.link = composite.querySelector("a");
    this.link.addEventListener("click", (event) => this.freshClick(event, "composite"));
  }

  render(recording) {
    this.recording = recording;
    this.renderComposite(recording);
    this.renderParts(recording);
    this.schedulePoll(recording);
  }

  renderComposite(recording) {
    const state = recording.composite || {};
    const status = ["pending", "running", "ready", "failed"].includes(state.status) ? state.status : "pending";
    const percent = Math.round(Math.min(1, Math.max(0, Number(state.progress) || 0)) * 100);
    this.composite.dataset.status = status;
    setText(this.statusText, `recordings.composite.${status}`, { percent, reason: state.reason || "—" });
    this.progress.hidden = status !== "running";
    this.progress.value = percent / 100;
    setLabel(this.progress, "recordings.composite_progress", { percent });
    const ready = status === "ready" && typeof state.url === "string";
    this.link.hidden = !ready;
    if (ready) {
      this.link.href = state.url;
      this.link.download = fileName(recording, "MP4", "mp4");
    }
  }

  renderParts(recording) {
    const parts = (recording.parts || []).filter((part) => typeof part.url === "string");
    const items = parts.map((part) => {
      const source = t(`recordings.source.${part.source}`);
      const details = [formatClock(part.duration_s), sizeText(part.size_bytes)].filter(Boolean).join(" · ");
      const link = h("a", {
        href: part.url,
        download: fileName(recording, `${part.source} ${part.participant_name}`, part.format),
        text: t("recordings.part_label", { source, name: part.participant_name }),
        onclick: (event) => this.freshClick(event, part.id),
      });
      return h("li", {}, link, h("span", { class: "hint", text: ` ${details}` }));
    });
    if (items.length === 0) {
      items.push(h("li", { class: "hint", i18n: "recordings.parts_none" }));
    }
    this.partsList.replaceChildren(...items);
  }

  schedulePoll(recording) {
    clearTimeout(this.timer);
    const status = recording.composite?.status;
    if (status === "pending" || status === "running") {
      this.timer = setTimeout(() => this.poll(), POLL_MS);
    }
  }

  async poll() {
    try {
      const fresh = await this.refresh();
      this.render(fresh);
    } catch {
      // a flaky link: try again at the next turn
      this.schedulePoll(this.recording);
    }
  }

  // Follows a download link with a URL signed just now.
  async freshClick(event, file) {
    event.preventDefault();
    const anchor = event.currentTarget;
    try {
      const fresh = await this.refresh();
      this.render(fresh);
      const url =
        file === "composite" ? fresh.composite?.url : (fresh.parts || []).find((part) => part.id === file)?.url;
      if (!url) {
        throw new Error("no URL");
      }
      const go = h("a", { href: url, download: anchor.download || true, hidden: true });
      document.body.append(go);
      go.click();
      go.remove();
    } catch {
      this.notice(t("recordings.download_failed"));
    }
  }

  destroy() {
    clearTimeout(this.timer);
  }
}
