// Small DOM helpers: no framework, so that pages stay a few kilobytes on weak links.

import { setLabel, setText, setTitle } from "./i18n.js";

// h("button", {class: "x", i18n: "key", testid: "join", onclick: fn}, child, ...)
// `i18n`, `i18nLabel` and `i18nTitle` take translation keys, `args` their
// placeholders; `testid` sets data-testid; other keys are attributes (true
// sets an empty attribute; false, null and undefined set nothing).
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  const { i18n, i18nLabel, i18nTitle, args, testid, dataset, ...rest } = props;
  for (const [name, value] of Object.entries(rest)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name === "class") {
      element.className = value;
    } else if (name === "text") {
      element.textContent = value;
    } else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  if (testid) {
    element.dataset.testid = testid;
  }
  if (dataset) {
    Object.assign(element.dataset, dataset);
  }
  if (i18n) {
    setText(element, i18n, args);
  }
  if (i18nLabel) {
    setLabel(element, i18nLabel, args);
  }
  if (i18nTitle) {
    setTitle(element, i18nTitle, args);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      element.append(child);
    }
  }
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

// Toggles the `hidden` attribute (true shows the element).
export function show(element, visible = true) {
  element.hidden = !visible;
}

// aria-pressed for toggle buttons.
export function setPressed(button, pressed) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
}
