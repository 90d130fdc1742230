// The landing page (index.html): only the language switch.

import { byId } from "./dom.js";
import { bindLanguageSelect, initI18n } from "./i18n.js";

async function main() {
  await initI18n();
  bindLanguageSelect(byId("language"));
}

main();
