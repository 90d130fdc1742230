// The administrators' pages (admin.html, served at /admin): attendance of a
// lesson, a course's summary, a student's footprint, and verification of the
// footprint record.
//
// The address says what to show, without the token, so that it can be shared
// or bookmarked: /admin?lesson=L1, ?course=CS101, ?student=u1, ?verify=1. The
// token comes once in the link's fragment (#token=...), like the classroom's,
// and is kept in this tab's sessionStorage. Every request sends it as
// `Authorization: Bearer`; it never goes into an address, so CSV files are
// fetched with it and saved from a Blob URL.

import { byId, h, show } from "./dom.js";
import { bindLanguageSelect, initI18n, setText, t } from "./i18n.js";
import { forgetToken, takeToken, tokenClaims } from "./token.js";
import * as fmt from "./admin-format.js";
import { sortableTable } from "./admin-table.js";
import { fitLabels, timelineFigure } from "./admin-timeline.js";

const TOKEN_SCOPE = "@admin"; // sessionStorage key of this page's token ("@": no lesson id has one)
const STATUSES = ["present", "late", "partial", "absent"];
const KINDS = ["lecture", "seminar", "consultation", "defence", "exam"];
const LESSON_STATES = ["scheduled", "live", "ended", "cancelled"];
const ROLES = ["teacher", "assistant", "admin", "student", "observer"];

const state = {
  token: null,
  claims: null,
  route: { kind: "home" },
  data: null,
  error: null,
  verify: null, // {result} | {error} | {running: true}
  ticket: 0,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

// --- the API -------------------------------------------------------------------------------

async function request(path) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}` },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch (error) {
    throw new ApiError(0, "network", String(error && error.message ? error.message : error));
  }
  if (!response.ok) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // not JSON (a proxy's error page): the status says enough
    }
    throw new ApiError(response.status, body.error || "unknown", body.message || "");
  }
  return response;
}

async function api(path) {
  return (await request(path)).json();
}

function filenameOf(response, fallback) {
  const header = response.headers.get("Content-Disposition") || "";
  const match = header.match(/filename="?([^";]+)"?/i);
  return match ? match[1] : fallback;
}

// Fetches a CSV with the token and saves it through a Blob URL.
async function downloadCsv(path, fallback, button) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const response = await request(`${path}?format=csv`);
    const blob = await response.blob();
    const name = filenameOf(response, fallback);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
    announce(t("admin.csv.saved", { file: name }));
  } catch (error) {
    notice(errorMessage(error));
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function pathFor(route) {
  const id = encodeURIComponent(route.id);
  switch (route.kind) {
    case "lesson":
      return `/api/lessons/${id}/report`;
    case "course":
      return `/api/courses/${id}/report`;
    case "student":
      return `/api/students/${id}/footprint`;
    default:
      return null;
  }
}

// --- page plumbing --------------------------------------------------------------------------

function announce(text) {
  const announcer = byId("announcer");
  announcer.textContent = "";
  // A fresh text node after a tick, so that the same words are read again.
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function notice(text) {
  const banner = byId("notice");
  banner.textContent = text;
  show(banner, Boolean(text));
}

function errorMessage(error) {
  if (error instanceof ApiError) {
    return t(errorKeys(error).text);
  }
  return t("admin.error.unknown_text");
}

function errorKeys(error) {
  const status = error instanceof ApiError ? error.status : -1;
  const name =
    { 0: "network", 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 503: "unavailable" }[
      status
    ] || "unknown";
  return { title: `admin.error.${name}_title`, text: `admin.error.${name}_text` };
}

function currentRoute() {
  const params = new URLSearchParams(location.search);
  for (const kind of ["lesson", "course", "student"]) {
    const value = (params.get(kind) || "").trim();
    if (value) {
      return { kind, id: value };
    }
  }
  if (params.has("verify")) {
    return { kind: "verify" };
  }
  return { kind: "home" };
}

// An address of this page for a route, keeping ?lang= when the address had it.
function href(kind, id) {
  const params = new URLSearchParams();
  params.set(kind, kind === "verify" ? "1" : id);
  const lang = new URLSearchParams(location.search).get("lang");
  if (lang) {
    params.set("lang", lang);
  }
  return `${location.pathname}?${params}`;
}

function navigate(url) {
  const target = new URL(url, location.href);
  if (target.pathname !== location.pathname || target.origin !== location.origin) {
    location.assign(target);
    return;
  }
  history.pushState(null, "", target.pathname + target.search);
  showRoute({ focus: true });
}

function routeLink(kind, id, content, props = {}) {
  return h("a", { href: href(kind, id), "data-route": "", ...props }, content);
}

function focusHeading() {
  const heading = byId("report-heading");
  if (heading) {
    heading.focus({ preventScroll: false });
  }
}

function setTitle(text) {
  document.title = text ? `${text} · Sabaq` : t("admin.page_title");
}

// --- the views -------------------------------------------------------------------------------

async function showRoute({ focus = false } = {}) {
  const route = currentRoute();
  state.route = route;
  state.data = null;
  state.error = null;
  state.verify = null;
  notice("");
  fillFinder();
  const ticket = ++state.ticket;
  const path = pathFor(route);
  if (path) {
    show(byId("view-loading"), true);
    show(byId("view"), false);
    try {
      const data = await api(path);
      if (ticket !== state.ticket) {
        return;
      }
      state.data = data;
    } catch (error) {
      if (ticket !== state.ticket) {
        return;
      }
      state.error = error;
      if (error instanceof ApiError && error.status === 401) {
        forgetToken(TOKEN_SCOPE);
      }
    }
  }
  render();
  if (focus) {
    focusHeading();
  }
}

async function refresh(button) {
  button.disabled = true;
  try {
    state.data = await api(pathFor(state.route));
    render();
    // The button was drawn anew: the focus goes to its successor (if still live).
    document.querySelector('[data-testid="admin-refresh"]')?.focus();
    announce(t("admin.live.refreshed"));
  } catch (error) {
    notice(errorMessage(error));
    button.disabled = false;
  }
}

function render() {
  const view = byId("view");
  show(byId("view-loading"), false);
  let content;
  try {
    content = state.error ? errorView(state.error) : buildView(state.route.kind, state.data);
  } catch (error) {
    // An answer this page does not understand (a newer server?): say so, not a blank page.
    console.error("sabaq: cannot show this report", error);
    state.error = new ApiError(-1, "unknown", String(error && error.message ? error.message : error));
    content = errorView(state.error);
  }
  view.dataset.view = state.error ? "error" : state.route.kind;
  view.replaceChildren(content);
  show(view, true);
  drawTimeline();
  const heading = byId("report-heading");
  setTitle(heading ? heading.textContent : "");
  for (const link of document.querySelectorAll(".admin-finder [data-route]")) {
    if (state.route.kind === "verify" && link.id === "verify-link") {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
}

function buildView(kind, data) {
  switch (kind) {
    case "lesson":
      return lessonView(data);
    case "course":
      return courseView(data);
    case "student":
      return studentView(data);
    case "verify":
      return verifyView();
    default:
      return homeView();
  }
}

function heading(text, props = {}) {
  return h("h1", { id: "report-heading", tabindex: "-1", ...props }, text);
}

function eyebrow(...parts) {
  const p = h("p", { class: "eyebrow" });
  parts
    .filter(Boolean)
    .forEach((part, index) => {
      if (index > 0) {
        p.append(h("span", { class: "sep", "aria-hidden": "true", text: " · " }));
      }
      p.append(part);
    });
  return p;
}

function facts(entries) {
  const list = h("dl", { class: "facts" });
  for (const [key, value, extra] of entries) {
    if (value === null || value === undefined) {
      continue;
    }
    list.append(h("div", { class: "fact" }, h("dt", { i18n: key }), h("dd", {}, value, extra || null)));
  }
  return list;
}

function actions(...buttons) {
  return h("div", { class: "report-actions" }, ...buttons.filter(Boolean));
}

function csvButton(path, fallback) {
  const button = h("button", { type: "button", class: "primary", testid: "admin-csv" });
  button.append(h("span", { class: "icon-download", "aria-hidden": "true" }), h("span", { i18n: "admin.csv.download" }));
  button.addEventListener("click", () => downloadCsv(path, fallback, button));
  return button;
}

function printButton() {
  return h("button", { type: "button", testid: "admin-print", i18n: "admin.print", onclick: () => window.print() });
}

function statusBadge(status) {
  const known = STATUSES.includes(status) ? status : "absent";
  return h(
    "span",
    { class: "status", dataset: { status: known } },
    h("span", { class: "status-mark", "aria-hidden": "true" }),
    h("span", { i18n: `admin.status.${known}` }),
  );
}

function kindText(kind) {
  return KINDS.includes(kind) ? t(`admin.kind.${kind}`) : kind || "—";
}

function roleText(role) {
  return t(ROLES.includes(role) ? `role.${role}` : "role.unknown");
}

function lessonStateBadge(status) {
  if (!LESSON_STATES.includes(status)) {
    return null;
  }
  return h("span", { class: "lesson-state", dataset: { state: status }, i18n: `admin.lesson_state.${status}` });
}

function generatedNote(iso) {
  return h(
    "p",
    { class: "generated" },
    t("admin.generated", { time: fmt.dateTime(iso), zone: fmt.timeZoneName() }),
  );
}

function thresholdsNote(thresholds) {
  if (!thresholds) {
    return null;
  }
  return h(
    "p",
    { class: "rules", testid: "admin-rules" },
    t("admin.rules", {
      late: fmt.number(thresholds.late_after_min, 1),
      present: fmt.percent(thresholds.present_min_share),
      partial: fmt.percent(thresholds.partial_min_share),
    }),
  );
}

function countsList(counts, label) {
  const list = h("ul", { class: "counts", testid: "admin-counts", "aria-label": label });
  for (const status of STATUSES) {
    list.append(
      h(
        "li",
        { class: "count", dataset: { status }, testid: `admin-count-${status}` },
        h("span", { class: "count-number", text: fmt.number(counts?.[status] ?? 0) }),
        statusBadge(status),
      ),
    );
  }
  return list;
}

function nameCell(person, { link = false } = {}) {
  const name = person.name || person.user_id;
  const cell = h("div", { class: "who" });
  cell.append(
    link && person.role !== "teacher"
      ? routeLink("student", person.user_id, name, { class: "who-name" })
      : h("span", { class: "who-name", text: name }),
  );
  // The role repeats here for narrow screens and paper, where its own column is left out.
  const meta = h(
    "span",
    { class: "who-id" },
    person.role ? h("span", { class: "who-role", text: `${roleText(person.role)} · ` }) : null,
    person.user_id,
  );
  cell.append(meta);
  if (person.in_roster === false && (person.role === undefined || person.role === "student")) {
    cell.append(h("span", { class: "badge not-roster", i18n: "admin.not_in_roster" }));
  }
  return cell;
}

function minutesCell(minutes) {
  return fmt.duration(minutes);
}

function qualityLevel(quality) {
  if (!quality || !quality.samples) {
    return null;
  }
  const loss = quality.loss_mean ?? 0;
  const rtt = quality.rtt_p95_ms ?? quality.rtt_mean_ms ?? 0;
  if (loss >= 0.08 || rtt >= 600) {
    return "poor";
  }
  if (loss >= 0.02 || rtt >= 300) {
    return "fair";
  }
  return "good";
}

function qualityCell(quality) {
  const level = qualityLevel(quality);
  if (!level) {
    return h("span", { class: "muted", i18n: "admin.quality.none" });
  }
  const parts = [];
  if (fmt.isNumber(quality.loss_mean)) {
    parts.push(t("admin.quality.loss", { value: fmt.percent(quality.loss_mean, 1) }));
  }
  if (fmt.isNumber(quality.rtt_p95_ms)) {
    parts.push(t("admin.quality.rtt", { value: fmt.number(quality.rtt_p95_ms) }));
  }
  return h(
    "span",
    { class: "quality-cell", dataset: { level } },
    h("span", { class: "quality-level", i18n: `admin.quality.${level}` }),
    parts.length ? h("span", { class: "quality-detail", text: parts.join(" · ") }) : null,
  );
}

// Time present, and under it when the person first came and last left (and how
// many times they connected, when more than once).
function presenceCell(person) {
  const cell = h("span", { class: "presence" }, h("span", { text: minutesCell(person.minutes_present) }));
  if (person.first_join) {
    cell.append(
      h("span", {
        class: "who-id span-times",
        text: `${fmt.time(person.first_join)}–${fmt.time(person.last_leave)}`,
        title: t("admin.col.in_lesson"),
      }),
    );
  }
  if (person.sessions > 1) {
    cell.append(h("span", { class: "who-id", text: t("admin.sessions", { n: fmt.number(person.sessions) }) }));
  }
  return cell;
}

const STATUS_ORDER = Object.fromEntries(STATUSES.map((status, index) => [status, index]));

// "Асқар Нұрланұлы (t1)" for teachers who took part; the id alone for the others.
function teacherNames(ids, people) {
  const names = new Map(people.map((p) => [p.user_id, p.name]));
  return (ids || []).map((id) => (names.get(id) && names.get(id) !== id ? `${names.get(id)} (${id})` : id)).join(", ");
}

function lessonView(report) {
  const lesson = report.lesson || {};
  const people = report.people || [];
  const head = h(
    "header",
    { class: "report-head" },
    eyebrow(
      h("span", { i18n: "admin.lesson.eyebrow" }),
      lesson.course ? routeLink("course", lesson.course, lesson.course, { testid: "admin-course-link" }) : null,
      h("span", { text: kindText(lesson.kind) }),
      lessonStateBadge(lesson.status),
    ),
    heading(lesson.title || lesson.id),
    facts([
      [
        "admin.lesson.scheduled",
        fmt.timeRange(lesson.scheduled_start, lesson.scheduled_end),
        h("span", { class: "fact-extra", text: ` (${fmt.duration(report.scheduled_minutes)})` }),
      ],
      [
        "admin.lesson.held",
        report.held
          ? report.live
            ? t("admin.lesson.live_since", { time: fmt.dateTime(report.actual_start) })
            : fmt.timeRange(report.actual_start, report.actual_end)
          : t("admin.lesson.not_held"),
        report.held && (report.segments || []).length > 1
          ? h("span", { class: "fact-extra", text: ` ${t("admin.lesson.segments", { n: fmt.number(report.segments.length) })}` })
          : null,
      ],
      ["admin.lesson.duration", report.held ? fmt.longDuration(report.duration_minutes) : "—"],
      [
        "admin.lesson.overrun",
        report.overrun_minutes > 0 ? fmt.duration(report.overrun_minutes) : t("admin.lesson.no_overrun"),
      ],
      ["admin.lesson.teachers", teacherNames(lesson.teacher_ids, people) || "—"],
    ]),
    actions(
      csvButton(pathFor(state.route), `lesson-${lesson.id}-attendance.csv`),
      printButton(),
      report.live
        ? h("button", { type: "button", testid: "admin-refresh", i18n: "admin.live.refresh", onclick: (e) => refresh(e.currentTarget) })
        : null,
    ),
    report.live ? h("p", { class: "banner-inline warn", role: "note", text: t("admin.live.note", { time: fmt.time(report.generated_at) }) }) : null,
  );

  const students = people.filter((p) => p.role === "student").length;
  const countsSection = h(
    "section",
    { class: "report-section", "aria-labelledby": "counts-heading" },
    h("h2", { id: "counts-heading", i18n: "admin.lesson.counts_heading", args: { n: fmt.number(students) } }),
    countsList(report.counts, t("admin.lesson.counts_heading", { n: fmt.number(students) })),
    thresholdsNote(report.thresholds),
  );

  const columns = [
    { key: "name", label: "admin.col.name", header: true, sort: (p) => p.name || p.user_id, cell: (p) => nameCell(p, { link: true }) },
    { key: "role", label: "admin.col.role", sort: (p) => roleText(p.role), cell: (p) => roleText(p.role), className: "col-role" },
    { key: "status", label: "admin.col.status", sort: (p) => STATUS_ORDER[p.status] ?? 9, compare: "number", cell: (p) => statusBadge(p.status), className: "status-col" },
    { key: "minutes_present", label: "admin.col.present", numeric: true, cell: presenceCell },
    { key: "share", label: "admin.col.share", numeric: true, cell: (p) => fmt.percent(p.share) },
    { key: "late_minutes", label: "admin.col.late", numeric: true, cell: (p) => (p.late_minutes > 0 ? minutesCell(p.late_minutes) : "—"), sort: (p) => p.late_minutes },
    { key: "camera_minutes", label: "admin.col.camera", numeric: true, cell: (p) => minutesCell(p.camera_minutes) },
    { key: "microphone_minutes", label: "admin.col.microphone", numeric: true, cell: (p) => minutesCell(p.microphone_minutes) },
    { key: "talk_minutes", label: "admin.col.talk", numeric: true, cell: (p) => minutesCell(p.talk_minutes) },
    { key: "chat_messages", label: "admin.col.chat", numeric: true, cell: (p) => fmt.number(p.chat_messages) },
    { key: "hands_raised", label: "admin.col.hands", numeric: true, cell: (p) => fmt.number(p.hands_raised) },
    {
      key: "quality",
      label: "admin.col.quality",
      numeric: true,
      sort: (p) => (p.quality && p.quality.samples ? p.quality.loss_mean ?? 0 : null),
      cell: (p) => qualityCell(p.quality),
    },
  ];
  const table = sortableTable({
    testid: "admin-lesson-table",
    labelledBy: "people-heading",
    columns,
    rows: people,
    rowTestid: (p) => `admin-person-${p.user_id}`,
    rowData: (p) => ({ status: p.status, role: p.role }),
    announce,
  });
  const peopleSection = h(
    "section",
    { class: "report-section", "aria-labelledby": "people-heading" },
    h("h2", { id: "people-heading", i18n: "admin.lesson.people_heading", args: { n: fmt.number(people.length) } }),
    people.length ? table : h("p", { class: "muted", i18n: "admin.lesson.nobody" }),
  );

  const timelineSection = h(
    "section",
    { class: "report-section timeline-section", "aria-labelledby": "timeline-heading" },
    h("h2", { id: "timeline-heading", i18n: "admin.timeline.heading" }),
    h("p", { class: "hint", i18n: "admin.timeline.intro" }),
    report.held && people.length
      ? h("div", { id: "timeline-box", class: "timeline-box" })
      : h("p", { class: "muted", i18n: "admin.timeline.empty" }),
  );

  return h(
    "article",
    { class: "report lesson-report", "aria-labelledby": "report-heading" },
    head,
    countsSection,
    peopleSection,
    timelineSection,
    generatedNote(report.generated_at),
  );
}

// Draws (or redraws, at a new width) the lesson's timeline into #timeline-box.
function drawTimeline() {
  const box = byId("timeline-box");
  if (!box || state.route.kind !== "lesson" || !state.data) {
    return;
  }
  const width = box.clientWidth || 900;
  const { legend, svg } = timelineFigure(state.data, { width, headingId: "timeline-heading" });
  box.replaceChildren(legend, h("div", { class: "timeline-scroll" }, svg));
  fitLabels(svg);
}

function courseView(report) {
  const lessons = report.lessons || [];
  const students = report.students || [];
  const scheduledMinutes = lessons.reduce((sum, lesson) => sum + (lesson.scheduled_minutes || 0), 0);
  const share = report.lessons_total ? report.lessons_held / report.lessons_total : null;
  const head = h(
    "header",
    { class: "report-head" },
    eyebrow(h("span", { i18n: "admin.course.eyebrow" })),
    heading(t("admin.course.heading", { course: report.course })),
    facts([
      [
        "admin.course.lessons_held",
        t("admin.course.held_of", {
          held: fmt.number(report.lessons_held),
          total: fmt.number(report.lessons_total),
          share: fmt.percent(share),
        }),
      ],
      [
        "admin.course.live_hours",
        t("admin.course.hours", { hours: fmt.number(report.academic_hours, 1), minutes: fmt.longDuration(report.live_minutes) }),
      ],
      [
        "admin.course.scheduled_hours",
        t("admin.course.hours", {
          hours: fmt.number(scheduledMinutes / 50, 1),
          minutes: fmt.longDuration(scheduledMinutes),
        }),
      ],
      [
        "admin.course.live_share",
        scheduledMinutes ? fmt.percent(report.live_minutes / scheduledMinutes) : "—",
      ],
    ]),
    h("p", { class: "rules", i18n: "admin.course.hour_note" }),
    actions(csvButton(pathFor(state.route), `course-${report.course}-attendance.csv`), printButton()),
  );

  const lessonColumns = [
    { key: "date", label: "admin.col.date", sort: (l) => l.actual_start || l.scheduled_start, cell: (l) => fmt.calendarDate(l.date), className: "nowrap" },
    { key: "title", label: "admin.col.lesson", header: true, sort: (l) => l.title, cell: (l) => lessonCell(l) },
    { key: "kind", label: "admin.col.kind", sort: (l) => kindText(l.kind), cell: (l) => kindText(l.kind) },
    {
      key: "duration_minutes",
      label: "admin.col.held",
      numeric: true,
      sort: (l) => (l.held ? l.duration_minutes : null),
      cell: (l) => heldCell(l),
    },
    ...STATUSES.map((status) => ({
      key: status,
      label: `admin.status.${status}`,
      numeric: true,
      cell: (l) => (l.held ? fmt.number(l[status]) : "—"),
      sort: (l) => (l.held ? l[status] : null),
    })),
  ];
  const lessonsSection = h(
    "section",
    { class: "report-section", "aria-labelledby": "lessons-heading" },
    h("h2", { id: "lessons-heading", i18n: "admin.course.lessons_heading", args: { n: fmt.number(lessons.length) } }),
    lessons.length
      ? sortableTable({
          testid: "admin-course-table",
          labelledBy: "lessons-heading",
          columns: lessonColumns,
          rows: lessons,
          rowTestid: (l) => `admin-lesson-${l.id}`,
          rowData: (l) => ({ held: l.held ? "true" : "false" }),
          announce,
        })
      : h("p", { class: "muted", i18n: "admin.course.no_lessons" }),
  );

  const studentColumns = [
    { key: "name", label: "admin.col.name", header: true, sort: (s) => s.name || s.user_id, cell: (s) => nameCell(s, { link: true }) },
    ...STATUSES.map((status) => ({ key: status, label: `admin.status.${status}`, numeric: true, cell: (s) => fmt.number(s[status]) })),
    { key: "rate", label: "admin.col.rate", numeric: true, cell: (s) => rateCell(s.rate) },
    { key: "minutes_present", label: "admin.col.time_present", numeric: true, cell: (s) => fmt.longDuration(s.minutes_present) },
  ];
  const studentsSection = h(
    "section",
    { class: "report-section", "aria-labelledby": "students-heading" },
    h("h2", { id: "students-heading", i18n: "admin.course.students_heading", args: { n: fmt.number(students.length) } }),
    students.length
      ? sortableTable({
          testid: "admin-students-table",
          labelledBy: "students-heading",
          columns: studentColumns,
          rows: students,
          rowTestid: (s) => `admin-student-${s.user_id}`,
          announce,
        })
      : h("p", { class: "muted", i18n: "admin.course.no_students" }),
    h("p", { class: "rules", i18n: "admin.course.rate_note", args: { n: fmt.number(report.lessons_held) } }),
    thresholdsNote(report.thresholds),
  );

  return h(
    "article",
    { class: "report course-report", "aria-labelledby": "report-heading" },
    head,
    lessonsSection,
    studentsSection,
    generatedNote(report.generated_at),
  );
}

function lessonCell(lesson) {
  return h(
    "div",
    { class: "who" },
    routeLink("lesson", lesson.id, lesson.title || lesson.id, { class: "who-name" }),
    h("span", { class: "who-id", text: `${lesson.id} · ${fmt.time(lesson.actual_start || lesson.scheduled_start)}` }),
  );
}

function heldCell(lesson) {
  if (lesson.live) {
    return h("span", { class: "lesson-state", dataset: { state: "live" }, i18n: "admin.lesson_state.live" });
  }
  if (!lesson.held) {
    return h("span", { class: "muted", i18n: lesson.status === "cancelled" ? "admin.lesson_state.cancelled" : "admin.lesson.not_held_short" });
  }
  const cell = h("span", {}, fmt.duration(lesson.duration_minutes));
  if (lesson.overrun_minutes > 0) {
    cell.append(h("span", { class: "who-id", text: t("admin.course.overrun", { time: fmt.duration(lesson.overrun_minutes) }) }));
  }
  return cell;
}

function rateCell(rate) {
  if (!fmt.isNumber(rate)) {
    return "—";
  }
  const level = rate >= 0.75 ? "good" : rate >= 0.5 ? "fair" : "poor";
  const bar = h("span", { class: "rate-bar", "aria-hidden": "true" }, h("span", { class: "rate-fill", dataset: { level } }));
  // The fill's width is data, set through the CSSOM (allowed by the style-src policy).
  bar.firstChild.style.width = `${Math.round(Math.min(1, Math.max(0, rate)) * 100)}%`;
  return h("span", { class: "rate" }, h("span", { class: "rate-text", text: fmt.percent(rate) }), bar);
}

function studentView(report) {
  const summary = report.summary || {};
  const lessons = report.lessons || [];
  const events = report.events || [];
  const joined = events.find((e) => e.type === "participant.joined" && e.data && e.data.name);
  const name = joined ? joined.data.name : report.user_id;
  const head = h(
    "header",
    { class: "report-head" },
    eyebrow(h("span", { i18n: "admin.student.eyebrow" }), h("span", { class: "who-id", text: report.user_id })),
    heading(name),
    facts([
      ["admin.student.lessons_held", fmt.number(summary.lessons_held)],
      ["admin.col.rate", fmt.percent(summary.rate)],
      ["admin.col.time_present", fmt.longDuration(summary.minutes_present)],
    ]),
    actions(csvButton(pathFor(state.route), `student-${report.user_id}-footprint.csv`), printButton()),
  );
  const countsSection = h(
    "section",
    { class: "report-section", "aria-labelledby": "counts-heading" },
    h("h2", { id: "counts-heading", i18n: "admin.student.counts_heading" }),
    countsList(summary, t("admin.student.counts_heading")),
    thresholdsNote(report.thresholds),
  );
  const columns = [
    { key: "scheduled_start", label: "admin.col.date", cell: (l) => fmt.dateTime(l.actual_start || l.scheduled_start), sort: (l) => l.actual_start || l.scheduled_start, className: "nowrap" },
    { key: "course", label: "admin.col.course", cell: (l) => routeLink("course", l.course, l.course) },
    { key: "title", label: "admin.col.lesson", header: true, cell: (l) => routeLink("lesson", l.lesson_id, l.title || l.lesson_id) },
    { key: "status", label: "admin.col.status", compare: "number", sort: (l) => STATUS_ORDER[l.status] ?? 9, cell: (l) => statusBadge(l.status) },
    { key: "minutes_present", label: "admin.col.present", numeric: true, cell: (l) => minutesCell(l.minutes_present) },
    { key: "share", label: "admin.col.share", numeric: true, cell: (l) => fmt.percent(l.share) },
    { key: "late_minutes", label: "admin.col.late", numeric: true, cell: (l) => (l.late_minutes > 0 ? minutesCell(l.late_minutes) : "—") },
    { key: "camera_minutes", label: "admin.col.camera", numeric: true, cell: (l) => minutesCell(l.camera_minutes) },
    { key: "microphone_minutes", label: "admin.col.microphone", numeric: true, cell: (l) => minutesCell(l.microphone_minutes) },
    { key: "talk_minutes", label: "admin.col.talk", numeric: true, cell: (l) => minutesCell(l.talk_minutes) },
    { key: "chat_messages", label: "admin.col.chat", numeric: true, cell: (l) => fmt.number(l.chat_messages) },
    { key: "hands_raised", label: "admin.col.hands", numeric: true, cell: (l) => fmt.number(l.hands_raised) },
  ];
  const lessonsSection = h(
    "section",
    { class: "report-section", "aria-labelledby": "lessons-heading" },
    h("h2", { id: "lessons-heading", i18n: "admin.student.lessons_heading", args: { n: fmt.number(lessons.length) } }),
    lessons.length
      ? sortableTable({
          testid: "admin-student-lessons",
          labelledBy: "lessons-heading",
          columns,
          rows: lessons,
          rowTestid: (l) => `admin-lesson-${l.lesson_id}`,
          rowData: (l) => ({ status: l.status }),
          announce,
        })
      : h("p", { class: "muted", i18n: "admin.student.no_lessons" }),
  );
  const eventRows = events.map((event) =>
    h(
      "tr",
      {},
      h("td", { class: "num", text: String(event.seq) }),
      h("td", { text: fmt.dateTime(event.at) }),
      h("td", {}, event.lesson ? routeLink("lesson", event.lesson, event.lesson) : "—"),
      h("td", {}, h("code", { text: event.type })),
      h("td", { class: "event-data" }, eventDetail(event)),
    ),
  );
  const eventsSection = h(
    "section",
    { class: "report-section events-section", "aria-labelledby": "events-heading" },
    h(
      "details",
      {},
      h(
        "summary",
        {},
        h("h2", { id: "events-heading", class: "inline-heading", i18n: "admin.student.events_heading", args: { n: fmt.number(events.length) } }),
      ),
      report.next_after ? h("p", { class: "hint", i18n: "admin.student.events_more" }) : null,
      h(
        "div",
        { class: "table-wrap", role: "region", "aria-labelledby": "events-heading", tabindex: "0" },
        h(
          "table",
          { class: "report-table events-table", testid: "admin-student-events", "aria-labelledby": "events-heading" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col", class: "num", i18n: "admin.col.seq" }),
              h("th", { scope: "col", i18n: "admin.col.time" }),
              h("th", { scope: "col", i18n: "admin.col.lesson" }),
              h("th", { scope: "col", i18n: "admin.col.event" }),
              h("th", { scope: "col", i18n: "admin.col.details" }),
            ),
          ),
          h("tbody", {}, ...eventRows),
        ),
      ),
    ),
  );
  return h(
    "article",
    { class: "report student-report", "aria-labelledby": "report-heading" },
    head,
    countsSection,
    lessonsSection,
    eventsSection,
    generatedNote(report.generated_at),
  );
}

// An event's fields in a line, without the session id (an opaque random value).
function eventDetail(event) {
  const data = event.data || {};
  return Object.entries(data)
    .filter(([key]) => key !== "session")
    .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(", ");
}

function verifyView() {
  const button = h("button", {
    type: "button",
    class: "primary large",
    testid: "admin-verify-button",
    i18n: "admin.verify.run",
    onclick: () => runVerify(),
  });
  const result = h("div", { id: "verify-result", class: "verify-result", testid: "admin-verify-result", role: "status", "aria-live": "polite" });
  queueMicrotask(updateVerify);
  return h(
    "article",
    { class: "report verify-report", "aria-labelledby": "report-heading" },
    h(
      "header",
      { class: "report-head" },
      eyebrow(h("span", { i18n: "admin.verify.eyebrow" })),
      heading(t("admin.verify.heading")),
      h("p", { class: "lead-text", i18n: "admin.verify.intro" }),
      h("p", { class: "rules", i18n: "admin.verify.offline" }),
      h("div", { class: "report-actions" }, button),
    ),
    result,
  );
}

// The result replaces the contents of the live region that is already on the
// page (a region inserted with its text is not reliably read out).
async function runVerify() {
  const ticket = state.ticket;
  state.verify = { running: true };
  updateVerify();
  try {
    const result = await api("/api/footprint/verify");
    if (ticket !== state.ticket) {
      return;
    }
    state.verify = { result };
  } catch (error) {
    if (ticket !== state.ticket) {
      return;
    }
    state.verify = { error };
  }
  updateVerify();
}

function updateVerify() {
  const button = document.querySelector('[data-testid="admin-verify-button"]');
  const box = byId("verify-result");
  if (!button || !box) {
    return;
  }
  const running = Boolean(state.verify && state.verify.running);
  button.disabled = running;
  if (running) {
    button.setAttribute("aria-busy", "true");
  } else {
    button.removeAttribute("aria-busy");
  }
  setText(button, running ? "admin.verify.running" : "admin.verify.run");
  box.replaceChildren();
  fillVerifyResult(box);
}

function fillVerifyResult(box) {
  const verify = state.verify;
  if (!verify || verify.running) {
    box.dataset.state = verify && verify.running ? "running" : "idle";
    if (verify && verify.running) {
      box.append(h("p", { i18n: "admin.verify.running" }));
    }
    return;
  }
  if (verify.error) {
    const keys = errorKeys(verify.error);
    box.dataset.state = "error";
    box.append(
      h("h2", { id: "admin-verify-focus", tabindex: "-1", i18n: keys.title }),
      h("p", { i18n: keys.text }),
      verify.error.message ? h("p", { class: "server-message", lang: "en", text: verify.error.message }) : null,
    );
    return;
  }
  const r = verify.result;
  box.dataset.state = r.ok ? "ok" : "problem";
  const signatures = h("p", {
    class: r.signatures_checked ? "sig sig-ok" : "sig sig-warn",
    testid: "admin-verify-signatures",
    i18n: r.signatures_checked ? "admin.verify.signatures_checked" : "admin.verify.signatures_not_checked",
  });
  if (r.ok) {
    box.append(
      h(
        "h2",
        { id: "admin-verify-focus", tabindex: "-1", class: "verify-title" },
        h("span", { class: "verify-mark", "aria-hidden": "true" }),
        h("span", { i18n: "admin.verify.ok_title" }),
      ),
      h("p", {
        i18n: "admin.verify.ok_text",
        args: { events: fmt.number(r.events), checkpoints: fmt.number(r.checkpoints) },
      }),
      signatures,
      h("p", { class: "generated", text: t("admin.verify.checked_at", { time: fmt.dateTime(r.checked_at), zone: fmt.timeZoneName() }) }),
    );
    return;
  }
  box.append(
    h(
      "h2",
      { id: "admin-verify-focus", tabindex: "-1", class: "verify-title" },
      h("span", { class: "verify-mark", "aria-hidden": "true" }),
      h("span", { i18n: "admin.verify.problem_title" }),
    ),
    h(
      "p",
      { class: "verify-problem" },
      h("span", { class: "verify-problem-label", i18n: "admin.verify.problem" }),
      h("span", { lang: "en", class: "server-message", testid: "admin-verify-problem", text: r.problem || "—" }),
    ),
    facts([
      ["admin.verify.position", r.position === null || r.position === undefined ? "—" : t("admin.verify.event_n", { n: fmt.number(r.position) })],
      ["admin.verify.events_before", fmt.number(r.events)],
      ["admin.verify.checkpoints", fmt.number(r.checkpoints)],
    ]),
    signatures,
    h("p", { i18n: "admin.verify.problem_advice" }),
    h("p", { class: "generated", text: t("admin.verify.checked_at", { time: fmt.dateTime(r.checked_at), zone: fmt.timeZoneName() }) }),
  );
}

function homeView() {
  return h(
    "article",
    { class: "report home-report", "aria-labelledby": "report-heading" },
    heading(t("admin.home.heading")),
    h("p", { class: "lead-text", i18n: "admin.home.lead" }),
    h(
      "ul",
      { class: "home-list" },
      h("li", { i18n: "admin.home.lesson" }),
      h("li", { i18n: "admin.home.course" }),
      h("li", { i18n: "admin.home.student" }),
      h("li", {}, routeLink("verify", "1", t("admin.home.verify"))),
    ),
  );
}

function errorView(error) {
  const keys = errorKeys(error);
  return h(
    "article",
    { class: "report error-report", "aria-labelledby": "report-heading", testid: "admin-error", dataset: { status: String(error.status ?? "") } },
    heading(t(keys.title)),
    h("p", { i18n: keys.text }),
    error.message ? h("p", { class: "server-message", lang: "en", text: error.message }) : null,
  );
}

// --- start -----------------------------------------------------------------------------------

function bindFinder() {
  for (const form of document.querySelectorAll(".finder-form")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = form.querySelector("input");
      const value = input.value.trim();
      if (!value) {
        input.focus();
        return;
      }
      navigate(href(form.dataset.param, value));
    });
  }
  byId("verify-link").setAttribute("href", href("verify", "1"));
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-route]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    event.preventDefault();
    navigate(link.href);
  });
  window.addEventListener("popstate", () => showRoute({ focus: true }));
}

function fillFinder() {
  const route = currentRoute();
  for (const kind of ["lesson", "course", "student"]) {
    const input = byId(`find-${kind}`);
    if (route.kind === kind && document.activeElement !== input) {
      input.value = route.id;
    }
  }
}

function showSignedIn() {
  const claims = state.claims;
  const element = byId("signed-in");
  if (!claims) {
    show(element, false);
    return;
  }
  element.textContent = t("admin.signed_in", { name: claims.name || claims.sub || "", role: roleText(claims.role) });
  show(element, true);
}

async function main() {
  await initI18n();
  bindLanguageSelect(byId("language"));
  state.token = takeToken(TOKEN_SCOPE);
  if (!state.token) {
    show(byId("view-loading"), false);
    show(byId("view-notoken"), true);
    document.querySelector(".admin-finder").hidden = true;
    return;
  }
  state.claims = tokenClaims(state.token);
  showSignedIn();
  bindFinder();
  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(drawTimeline, 150);
  });
  window.addEventListener("sabaq:language", () => {
    showSignedIn();
    if (!byId("view").hidden) {
      render();
    }
  });
  // For the end-to-end tests and the curious: the state, read-only in spirit.
  window.sabaq = { state };
  await showRoute();
}

main();
