// The recordings of one lesson: /l/{lesson_id}/recordings#token=<JWT> (or
// ?lesson= on any path). Lists GET /api/lessons/{id}/recordings and links each
// to its playback page, passing the token on in the link's fragment.

import { dateTime } from "./admin-format.js";
import { byId, h } from "./dom.js";
import { bindLanguageSelect, initI18n, setText } from "./i18n.js";
import { formatClock } from "./recording-timeline.js";
import { takeToken } from "./token.js";

const ERROR_KEYS = { 401: "unauthorized", 403: "forbidden", 404: "not_found" };

function lessonIdFromLocation() {
  const match = location.pathname.match(/^\/l\/([^/]+)\/recordings\/?$/);
  if (match) {
    try {
      return decodeURIComponent(match[1]);
    } catch {
      return null;
    }
  }
  return new URLSearchParams(location.search).get("lesson");
}

function showView(name) {
  for (const view of document.querySelectorAll("[data-view]")) {
    view.hidden = view.dataset.view !== name;
  }
}

function render(recordings, token) {
  const items = recordings.map((recording) => {
    const date = dateTime(recording.started_at);
    const duration = formatClock(recording.duration_s);
    const status = h("span", {
      class: "badge rec-status",
      dataset: { status: recording.status },
      i18n: `recordings.status.${recording.status}`,
      args: { reason: recording.reason || "—" },
    });
    const watch = h("a", {
      class: "button-link",
      href: `${recording.player_path}#token=${encodeURIComponent(token)}`,
      i18n: "recordings.list_watch",
      i18nLabel: "recordings.list_watch_label",
      args: { date },
    });
    return h(
      "li",
      { dataset: { recording: recording.id } },
      h("span", { i18n: "recordings.list_item", args: { date, duration } }),
      status,
      watch,
    );
  });
  byId("list").replaceChildren(...items);
  byId("list-empty").hidden = items.length > 0;
}

async function main() {
  await initI18n();
  bindLanguageSelect(byId("language"));
  const lessonId = lessonIdFromLocation();
  const token = lessonId ? takeToken(lessonId) : null;
  if (!lessonId || !token) {
    showView("notoken");
    return;
  }
  let response;
  try {
    response = await fetch(`/api/lessons/${encodeURIComponent(lessonId)}/recordings`, {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
  } catch {
    response = { ok: false, status: 0 };
  }
  if (!response.ok) {
    const name = ERROR_KEYS[response.status] || "network";
    setText(byId("list-error-title"), `recordings.error.${name}_title`);
    setText(byId("list-error-text"), `recordings.error.${name}_text`);
    showView("error");
    return;
  }
  const body = await response.json();
  const recordings = Array.isArray(body.recordings) ? body.recordings : [];
  render(recordings, token);
  window.addEventListener("sabaq:language", () => render(recordings, token));
  showView("list");
}

main().catch((error) => {
  console.error("sabaq: the recordings page failed", error);
  showView("error");
});
