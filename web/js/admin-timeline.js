// The lesson's timeline: one bar per person across the time the lesson was held.
//
// Presence is the solid bar, camera-on time a striped band over it, and
// speaking dark marks in a lane under it; the time axis shows clock times.
// Every bar is an SVG group with role="img" whose aria-label (and <title>,
// the tooltip) says the same in words, so that a screen reader or a printout
// in black and white loses nothing. Times are seconds from the lesson's start
// (report.actual_start), as the API gives them.

import { h } from "./dom.js";
import { t } from "./i18n.js";
import { minutesNumber, parseTime, percent, time } from "./admin-format.js";

// The SVG namespace, as the HTML parser assigns it (so that web/ names no address
// of another host, not even a namespace that is never fetched).
const SVG = new DOMParser().parseFromString("<svg></svg>", "text/html").body.firstChild.namespaceURI;

const ROW = 38; // height of one person's row
const BAR = 16; // height of the presence bar
const LANE = 5; // height of the speaking lane under the bar
const AXIS = 30; // height of the time axis above the rows
const RIGHT = 56; // the share column on the right
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800];

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      element.append(child);
    }
  }
  return element;
}

// The words a screen reader says for one bar (and the tooltip).
export function barSummary(person, totalMinutes) {
  const args = {
    name: person.name || person.user_id,
    present: minutesNumber(person.minutes_present),
    total: minutesNumber(totalMinutes),
    camera: minutesNumber(person.camera_minutes),
    talk: minutesNumber(person.talk_minutes),
    status: t(`admin.status.${person.status}`),
  };
  if (!person.minutes_present) {
    return t("admin.timeline.summary_absent", args);
  }
  return t("admin.timeline.summary", args);
}

// The whole lesson in seconds: to the end of the last segment (or of anything drawn).
function lessonSpan(report) {
  let end = 0;
  for (const [, e] of report.segments || []) {
    end = Math.max(end, e);
  }
  for (const person of report.people || []) {
    for (const key of ["presence", "camera", "speaking"]) {
      for (const [, e] of person.timeline?.[key] || []) {
        end = Math.max(end, e);
      }
    }
  }
  return Math.max(end, (report.duration_minutes || 0) * 60, 1);
}

function tickStep(total, pixels) {
  const most = Math.max(2, Math.floor(pixels / 72));
  return STEPS.find((step) => total / step <= most) || STEPS[STEPS.length - 1];
}

function truncate(text, room) {
  // A first guess at 7 px a character; fitLabels() measures once the picture is shown.
  const fits = Math.max(4, Math.floor(room / 7));
  return text.length > fits ? `${text.slice(0, fits - 1)}…` : text;
}

/** Shortens the names that the font draws wider than their room (the full name is in the title). */
export function fitLabels(root) {
  for (const label of root.querySelectorAll(".tl-name")) {
    const room = Number(label.dataset.room);
    let text = label.textContent;
    while (text.length > 4 && label.getComputedTextLength() > room) {
      text = `${text.replace(/…$/, "").slice(0, -1)}…`;
      label.textContent = text;
    }
  }
}

/** Builds the figure: legend, then the SVG sized to `width` CSS pixels. */
export function timelineFigure(report, { width, headingId }) {
  // Who taught first, then everyone else in the report's order (the roster's).
  const teaching = (p) => (p.role === "teacher" || p.role === "assistant" ? 0 : 1);
  const people = [...(report.people || [])].sort((a, b) => teaching(a) - teaching(b));
  const total = lessonSpan(report);
  const totalMinutes = report.duration_minutes || total / 60;
  const W = Math.max(300, Math.round(width));
  const LABEL = Math.max(90, Math.min(220, Math.round(W * 0.26)));
  const plot = W - LABEL - RIGHT;
  const H = AXIS + people.length * ROW + 6;
  const x = (seconds) => LABEL + (Math.min(Math.max(seconds, 0), total) / total) * plot;
  const origin = parseTime(report.actual_start);
  const step = tickStep(total, plot);

  const root = svg("svg", {
    class: "timeline",
    width: W,
    height: H,
    viewBox: `0 0 ${W} ${H}`,
    role: "group",
    "aria-labelledby": headingId,
    "data-testid": "admin-timeline",
    "data-seconds": Math.round(total),
  });

  // Stripes for camera time; one pattern, referenced by the bars and the legend.
  root.append(
    svg(
      "defs",
      {},
      svg(
        "pattern",
        { id: "tl-stripes", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
        svg("rect", { width: 6, height: 6, class: "tl-stripe-bg" }),
        svg("rect", { width: 3, height: 6, class: "tl-stripe-line" }),
      ),
      svg(
        "pattern",
        { id: "tl-paused", width: 5, height: 5, patternUnits: "userSpaceOnUse", patternTransform: "rotate(-45)" },
        svg("rect", { width: 1.5, height: 5, class: "tl-paused-line" }),
      ),
    ),
  );

  // The axis with clock times, and light grid lines through every row.
  const axis = svg("g", { class: "tl-axis", "aria-hidden": "true" });
  axis.append(svg("line", { x1: LABEL, x2: LABEL + plot, y1: AXIS - 6, y2: AXIS - 6, class: "tl-axis-line" }));
  // Ticks fall on round clock times (09:10, 09:20…), counted from the lesson's start.
  const offset = origin ? (origin.getTime() / 1000) % step : 0;
  const first = offset ? step - offset : 0;
  axis.append(svg("line", { x1: x(0), x2: x(0), y1: AXIS - 10, y2: H - 4, class: "tl-grid tl-grid-start" }));
  for (let s = first; s <= total + 0.001; s += step) {
    const px = x(s);
    if (s > 0.001) {
      axis.append(svg("line", { x1: px, x2: px, y1: AXIS - 10, y2: H - 4, class: "tl-grid" }));
    }
    const label = origin ? time(new Date(origin.getTime() + s * 1000), { seconds: step < 60 }) : `${Math.round(s / 60)}′`;
    // Labels are centred on their tick, but never cut at either end of the picture.
    const half = step < 60 ? 28 : 18;
    const anchor = px > LABEL + plot - half ? "end" : px < LABEL + half ? "start" : "middle";
    axis.append(svg("text", { x: px, y: AXIS - 14, "text-anchor": anchor, class: "tl-tick" }, label));
  }
  // The scheduled end, when the lesson ran past it (or ended before it, inside the picture).
  const scheduledEnd = parseTime(report.lesson?.scheduled_end);
  if (origin && scheduledEnd) {
    const s = (scheduledEnd.getTime() - origin.getTime()) / 1000;
    if (s > 0 && s < total) {
      axis.append(svg("line", { x1: x(s), x2: x(s), y1: AXIS - 6, y2: H - 4, class: "tl-scheduled-end" }));
    }
  }
  root.append(axis);

  // Stretches inside the picture when the lesson was not running (it ended and restarted).
  const gaps = [];
  const segments = report.segments || [];
  for (let i = 1; i < segments.length; i += 1) {
    if (segments[i][0] > segments[i - 1][1]) {
      gaps.push([segments[i - 1][1], segments[i][0]]);
    }
  }

  people.forEach((person, index) => {
    const y = AXIS + index * ROW + 4;
    const summary = barSummary(person, totalMinutes);
    const row = svg("g", {
      class: "tl-row",
      role: "img",
      "aria-label": summary,
      "data-person": person.user_id,
      "data-status": person.status,
      transform: `translate(0 ${y})`,
    });
    row.append(svg("title", {}, summary));
    const name = person.name || person.user_id;
    row.append(
      svg(
        "text",
        { x: LABEL - 10, y: BAR / 2 + 1, "text-anchor": "end", "dominant-baseline": "middle", class: "tl-name", "data-room": LABEL - 14 },
        truncate(name, LABEL - 14),
      ),
    );
    row.append(svg("rect", { x: LABEL, y: 0, width: plot, height: BAR, class: "tl-track", rx: 2 }));
    for (const [start, end] of gaps) {
      row.append(svg("rect", { x: x(start), y: 0, width: Math.max(1, x(end) - x(start)), height: BAR, class: "tl-paused", fill: "url(#tl-paused)" }));
    }
    const timeline = person.timeline || {};
    for (const [start, end] of timeline.presence || []) {
      row.append(svg("rect", { x: x(start), y: 0, width: Math.max(1.5, x(end) - x(start)), height: BAR, class: "tl-presence" }));
    }
    for (const [start, end] of timeline.camera || []) {
      row.append(svg("rect", { x: x(start), y: 0, width: Math.max(1.5, x(end) - x(start)), height: BAR / 2, class: "tl-camera", fill: "url(#tl-stripes)" }));
    }
    for (const [start, end] of timeline.speaking || []) {
      row.append(svg("rect", { x: x(start), y: BAR + 3, width: Math.max(2, x(end) - x(start)), height: LANE, class: "tl-speaking" }));
    }
    row.append(
      svg("text", { x: LABEL + plot + 8, y: BAR / 2 + 1, "dominant-baseline": "middle", class: "tl-share" }, percent(person.share)),
    );
    root.append(row);
  });

  const legend = h(
    "ul",
    { class: "tl-legend" },
    legendItem("tl-presence", "admin.timeline.legend_present"),
    legendItem("tl-camera-swatch", "admin.timeline.legend_camera"),
    legendItem("tl-speaking", "admin.timeline.legend_speaking"),
    legendItem("tl-track", "admin.timeline.legend_absent"),
    gaps.length ? legendItem("tl-paused-swatch", "admin.timeline.legend_paused") : null,
    origin && scheduledEnd && (scheduledEnd - origin) / 1000 > 0 && (scheduledEnd - origin) / 1000 < total
      ? legendItem("tl-scheduled-end", "admin.timeline.legend_scheduled_end", true)
      : null,
  );
  return { legend, svg: root, spanSeconds: total };
}

function legendItem(className, key, line = false) {
  const swatch = svg("svg", { width: 28, height: 14, viewBox: "0 0 28 14", "aria-hidden": "true", class: "tl-swatch" });
  if (line) {
    swatch.append(svg("line", { x1: 14, x2: 14, y1: 0, y2: 14, class: className }));
  } else if (className === "tl-camera-swatch") {
    swatch.append(svg("rect", { x: 0, y: 1, width: 28, height: 12, class: "tl-presence" }));
    swatch.append(svg("rect", { x: 0, y: 1, width: 28, height: 6, class: "tl-camera", fill: "url(#tl-stripes)" }));
  } else if (className === "tl-paused-swatch") {
    swatch.append(svg("rect", { x: 0, y: 1, width: 28, height: 12, class: "tl-track" }));
    swatch.append(svg("rect", { x: 0, y: 1, width: 28, height: 12, class: "tl-paused", fill: "url(#tl-paused)" }));
  } else if (className === "tl-speaking") {
    swatch.append(svg("rect", { x: 2, y: 4, width: 8, height: LANE, class: "tl-speaking" }));
    swatch.append(svg("rect", { x: 14, y: 4, width: 4, height: LANE, class: "tl-speaking" }));
    swatch.append(svg("rect", { x: 22, y: 4, width: 5, height: LANE, class: "tl-speaking" }));
  } else {
    swatch.append(svg("rect", { x: 0, y: 1, width: 28, height: 12, class: className }));
  }
  return h("li", {}, swatch, h("span", { i18n: key }));
}
