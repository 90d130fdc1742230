// The lesson's chat: the list (aria-live, so screen readers hear new
// messages) and the form that sends one.

import { h } from "./dom.js";
import { errorText, language, setText } from "./i18n.js";
import { roleKey } from "./people.js";

// `at` may come as ISO text, seconds or milliseconds since the epoch.
function dateOf(at) {
  if (typeof at === "number") {
    return new Date(at < 1e12 ? at * 1000 : at);
  }
  const parsed = Date.parse(at);
  return Number.isNaN(parsed) ? null : new Date(parsed);
}

export class ChatPanel {
  constructor({ list, form, input, send, error, onSend }) {
    this.list = list;
    this.form = form;
    this.input = input;
    this.send = send;
    this.error = error;
    this.onSend = onSend;
    this.youId = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    input.addEventListener("input", () => {
      this.error.hidden = true;
    });
  }

  async submit() {
    const text = this.input.value.trim();
    if (!text) {
      return;
    }
    this.send.disabled = true;
    try {
      await this.onSend(text);
      this.input.value = "";
      this.error.hidden = true;
    } catch (error) {
      this.error.textContent = errorText(error && error.code);
      this.error.hidden = false;
    } finally {
      this.send.disabled = false;
      this.input.focus();
    }
  }

  // Observers may read but not write.
  setAllowed(allowed) {
    this.input.disabled = !allowed;
    this.send.disabled = !allowed;
  }

  // The whole history (after welcome): built off-screen and swapped in at
  // once, with aria-busy so screen readers do not read a hundred messages.
  reset(messages, youId) {
    this.youId = youId;
    this.list.setAttribute("aria-busy", "true");
    this.list.replaceChildren(...messages.map((m) => this.item(m)));
    this.list.setAttribute("aria-busy", "false");
    this.list.scrollTop = this.list.scrollHeight;
  }

  add(message) {
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    this.list.append(this.item(message));
    if (nearBottom || message.from === this.youId) {
      this.list.scrollTop = this.list.scrollHeight;
    }
  }

  item(message) {
    const date = dateOf(message.at);
    const time = date
      ? h("time", {
          datetime: date.toISOString(),
          text: date.toLocaleTimeString(language(), { hour: "2-digit", minute: "2-digit" }),
        })
      : null;
    const role = h("span", { class: "msg-role" });
    setText(role, roleKey(message.role));
    return h(
      "li",
      {
        class: message.from === this.youId ? "msg mine" : "msg",
        dataset: { from: message.from || "", id: String(message.id ?? "") },
      },
      h("div", { class: "msg-meta" }, h("strong", { class: "msg-name", text: message.name || "" }), role, time),
      h("p", { class: "msg-text", text: message.text }),
    );
  }
}
