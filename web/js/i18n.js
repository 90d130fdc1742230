// Every string the UI shows, in Kazakh, Russian and English (web/i18n/*.json).
//
// The language is, in order: ?lang= in the address, the choice saved in
// localStorage, the browser's preferred languages, else Russian. Elements say
// which string they show with data-i18n (text), data-i18n-aria-label,
// data-i18n-placeholder and data-i18n-title, and data-i18n-args (JSON) for
// the {placeholders}; switching the language re-translates them all in place
// and fires `sabaq:language` on window for whatever else must be redrawn.

export const LANGUAGES = Object.freeze(["kk", "ru", "en"]);
export const DEFAULT_LANGUAGE = "ru";
const STORAGE_KEY = "sabaq.lang";

let current = DEFAULT_LANGUAGE;
let strings = {};

function saved() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage disabled (private mode, policy)
  }
}

export function detectLanguage() {
  const fromUrl = new URLSearchParams(location.search).get("lang");
  if (LANGUAGES.includes(fromUrl)) {
    return fromUrl;
  }
  const stored = saved();
  if (LANGUAGES.includes(stored)) {
    return stored;
  }
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) {
      return base;
    }
  }
  return DEFAULT_LANGUAGE;
}

export function language() {
  return current;
}

async function load(lang) {
  const url = new URL(`../i18n/${lang}.json`, import.meta.url);
  const response = await fetch(url, { cache: "default" });
  if (!response.ok) {
    throw new Error(`${url} answered ${response.status}`);
  }
  return response.json();
}

// Loads a language and re-translates the page. `save` remembers the choice.
export async function setLanguage(lang, { save = false } = {}) {
  const chosen = LANGUAGES.includes(lang) ? lang : DEFAULT_LANGUAGE;
  try {
    strings = await load(chosen);
    current = chosen;
  } catch (error) {
    // The page keeps its built-in text; better than no page on a flaky link.
    console.warn("sabaq: cannot load the language", chosen, error);
  }
  if (save) {
    try {
      localStorage.setItem(STORAGE_KEY, current);
    } catch {
      // not remembered; the choice still applies to this page
    }
    // A ?lang= in the address would win over the saved choice on reload.
    const url = new URL(location.href);
    if (url.searchParams.has("lang")) {
      url.searchParams.set("lang", current);
      history.replaceState(history.state, "", url);
    }
  }
  document.documentElement.lang = current;
  applyTranslations(document);
  window.dispatchEvent(new CustomEvent("sabaq:language", { detail: { lang: current } }));
  return current;
}

export function initI18n() {
  return setLanguage(detectLanguage());
}

export function hasKey(key) {
  return Object.prototype.hasOwnProperty.call(strings, key);
}

// The string for `key` with {name} placeholders filled from `args`; the key
// itself when it is missing, so that a gap shows instead of vanishing.
export function t(key, args) {
  const template = hasKey(key) ? strings[key] : key;
  if (!args) {
    return template;
  }
  return template.replace(/\{(\w+)\}/g, (match, name) =>
    Object.prototype.hasOwnProperty.call(args, name) ? String(args[name]) : match,
  );
}

// Server error codes (error.code) and local ones (ProtocolError.code, media errors).
export function errorText(code) {
  return t(errorKey(code));
}

// The key that says what a WebSocket close code means for the person
// (docs/protocol.md, "Close codes"); part is "title" or "text".
export function closeKey(code, part) {
  const key = `close.${code}.${part}`;
  return hasKey(key) ? key : `close.other.${part}`;
}

// The key for an error code: the server's (error.code) or a local one.
export function errorKey(code) {
  const key = `error.${code}`;
  return hasKey(key) ? key : "error.unknown";
}

function argsOf(element) {
  const raw = element.dataset.i18nArgs;
  if (!raw) {
    return undefined;
  }
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

const ATTRIBUTES = [
  ["i18nAriaLabel", "aria-label"],
  ["i18nPlaceholder", "placeholder"],
  ["i18nTitle", "title"],
];

export function translateElement(element) {
  const args = argsOf(element);
  const key = element.dataset.i18n;
  if (key && hasKey(key)) {
    element.textContent = t(key, args);
  }
  for (const [data, attribute] of ATTRIBUTES) {
    const attrKey = element.dataset[data];
    if (attrKey && hasKey(attrKey)) {
      element.setAttribute(attribute, t(attrKey, args));
    }
  }
}

export function applyTranslations(root) {
  const selector = "[data-i18n],[data-i18n-aria-label],[data-i18n-placeholder],[data-i18n-title]";
  if (root.nodeType === Node.ELEMENT_NODE && root.matches(selector)) {
    translateElement(root);
  }
  for (const element of root.querySelectorAll(selector)) {
    translateElement(element);
  }
}

// Sets an element's text (and optional aria-label) by key, remembering the
// key so that a language switch updates it.
// (Each writes only what differs: rows are refreshed several times a second
// while people speak, and an unchanged DOM costs no layout.)
export function setText(element, key, args) {
  element.dataset.i18n = key;
  setArgs(element, args);
  const text = t(key, args);
  if (element.textContent !== text) {
    element.textContent = text;
  }
}

export function setLabel(element, key, args) {
  element.dataset.i18nAriaLabel = key;
  setArgs(element, args);
  setAttribute(element, "aria-label", t(key, args));
}

export function setTitle(element, key, args) {
  element.dataset.i18nTitle = key;
  setArgs(element, args);
  setAttribute(element, "title", t(key, args));
}

function setAttribute(element, name, value) {
  if (element.getAttribute(name) !== value) {
    element.setAttribute(name, value);
  }
}

function setArgs(element, args) {
  if (args) {
    const json = JSON.stringify(args);
    if (element.dataset.i18nArgs !== json) {
      element.dataset.i18nArgs = json;
    }
  } else if (element.dataset.i18nArgs !== undefined) {
    delete element.dataset.i18nArgs;
  }
}

// Wires a <select> of languages: shows the current one, switches and saves on change.
export function bindLanguageSelect(select) {
  select.value = current;
  select.addEventListener("change", () => {
    setLanguage(select.value, { save: true });
  });
  window.addEventListener("sabaq:language", () => {
    select.value = current;
  });
}
