// Numbers, durations and times for the administrators' pages, in the page's language.
//
// Times from the API are UTC (ISO 8601 with Z); they are shown in the
// browser's time zone, which the pages name once (timeZoneName()).

import { language, t } from "./i18n.js";

const formats = new Map();

// Chromium ships no Kazakh calendar or number data (it prints "2026 M11 24"):
// Kazakh dates are spelled here, and numbers follow the Russian conventions,
// which Kazakhstan shares (decimal comma, a space between thousands).
const KK_MONTHS = [
  "қаңтар", "ақпан", "наурыз", "сәуір", "мамыр", "маусым",
  "шілде", "тамыз", "қыркүйек", "қазан", "қараша", "желтоқсан",
];

function locale(kind) {
  const lang = language();
  if (lang === "kk" && kind === "number" && Intl.NumberFormat.supportedLocalesOf(["kk"]).length === 0) {
    return "ru";
  }
  return lang;
}

function cached(kind, options) {
  const key = `${language()}|${kind}|${JSON.stringify(options)}`;
  let format = formats.get(key);
  if (!format) {
    try {
      format =
        kind === "number"
          ? new Intl.NumberFormat(locale(kind), options)
          : new Intl.DateTimeFormat(locale(kind), options);
    } catch {
      // A browser without this locale's data: the same numbers in its default locale.
      format = kind === "number" ? new Intl.NumberFormat(undefined, options) : new Intl.DateTimeFormat(undefined, options);
    }
    formats.set(key, format);
  }
  return format;
}

// The parts of a moment in the page's time zone (or UTC).
function parts(moment, timeZone) {
  const format = cached("date", {
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone,
  });
  const found = {};
  for (const part of format.formatToParts(moment)) {
    found[part.type] = part.value;
  }
  return found;
}

function kazakhDate(moment, timeZone) {
  const p = parts(moment, timeZone);
  return `${Number(p.day)} ${KK_MONTHS[Number(p.month) - 1]} ${p.year} ж.`;
}

function sameDay(a, b) {
  const x = parts(a);
  const y = parts(b);
  return x.year === y.year && x.month === y.month && x.day === y.day;
}

export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function number(value, digits = 0) {
  if (!isNumber(value)) {
    return "—";
  }
  return cached("number", { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(value);
}

// A share 0..1 as "84 %" (the locale decides the spacing and the sign).
export function percent(share, digits = 0) {
  if (!isNumber(share)) {
    return "—";
  }
  return cached("number", { style: "percent", maximumFractionDigits: digits }).format(share);
}

// The number of minutes as the tables show it: seconds under a minute, one
// decimal under ten minutes, whole minutes above (the CSV keeps the exact value).
export function minutesValue(minutes) {
  if (!isNumber(minutes)) {
    return null;
  }
  const seconds = Math.round(minutes * 60);
  if (seconds === 0) {
    return { key: "admin.unit.min", n: number(0) };
  }
  if (seconds < 60) {
    return { key: "admin.unit.s", n: number(seconds) };
  }
  return { key: "admin.unit.min", n: number(minutes, minutes < 10 ? 1 : 0) };
}

export function duration(minutes) {
  const value = minutesValue(minutes);
  return value ? t(value.key, { n: value.n }) : "—";
}

// Minutes as a bare number for sentences that name the unit themselves.
export function minutesNumber(minutes) {
  if (!isNumber(minutes)) {
    return "—";
  }
  return number(minutes, minutes < 10 ? 1 : 0);
}

// Long durations for the facts: "3 h 25 min"; shorter ones as duration().
export function longDuration(minutes) {
  if (!isNumber(minutes) || minutes < 120) {
    return duration(minutes);
  }
  const total = Math.round(minutes);
  return t("admin.unit.h_min", { h: number(Math.floor(total / 60)), m: number(total % 60) });
}

export function parseTime(iso) {
  if (!iso) {
    return null;
  }
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? null : moment;
}

export function dateTime(iso) {
  const moment = iso instanceof Date ? iso : parseTime(iso);
  if (!moment) {
    return "—";
  }
  if (language() === "kk") {
    return `${kazakhDate(moment)}, ${time(moment)}`;
  }
  return cached("date", { dateStyle: "medium", timeStyle: "short", hourCycle: "h23" }).format(moment);
}

export function time(iso, { seconds = false } = {}) {
  const moment = iso instanceof Date ? iso : parseTime(iso);
  if (!moment) {
    return "—";
  }
  const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (seconds) {
    options.second = "2-digit";
  }
  return cached("date", options).format(moment);
}

// A calendar date "2026-11-24" (the API's UTC date) without shifting it a day.
export function calendarDate(day) {
  if (!day) {
    return "—";
  }
  const moment = new Date(`${day}T12:00:00Z`);
  if (Number.isNaN(moment.getTime())) {
    return day;
  }
  if (language() === "kk") {
    return kazakhDate(moment, "UTC");
  }
  return cached("date", { dateStyle: "medium", timeZone: "UTC" }).format(moment);
}

// "24 Nov 2026, 09:00 – 10:30" (one date when both ends share it).
export function timeRange(startIso, endIso) {
  const start = parseTime(startIso);
  const end = parseTime(endIso);
  if (!start) {
    return "—";
  }
  if (!end) {
    return dateTime(start);
  }
  if (language() === "kk" || typeof Intl.DateTimeFormat.prototype.formatRange !== "function") {
    return sameDay(start, end) ? `${dateTime(start)}–${time(end)}` : `${dateTime(start)} – ${dateTime(end)}`;
  }
  return cached("date", { dateStyle: "medium", timeStyle: "short", hourCycle: "h23" }).formatRange(start, end);
}

export function timeZoneName() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

// Sort text by the page's language (Kazakh letters in their alphabet's order).
export function compareText(a, b) {
  return String(a ?? "").localeCompare(String(b ?? ""), language(), { sensitivity: "base", numeric: true });
}
