"""Static checks of the browser client in web/ (no browser needed).

The pages are plain ES modules served as they are, so nothing compiles them:
these tests catch what a build step would have caught (a missing module, a
missing translation) and what the project promises (no third-party URL, every
control named for screen readers, the same keys in Kazakh, Russian and
English).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "web"
LANGUAGES = ("kk", "ru", "en")
HTML_FILES = sorted(WEB.glob("*.html"))
JS_FILES = sorted((WEB / "js").glob("*.js"))
TEXT_SUFFIXES = {".html", ".js", ".css", ".json", ".txt", ".svg", ".webmanifest"}

# Codes the server sends (docs/protocol.md, "Error codes" and "Close codes")
# and the client's own; the UI translates them by code, so each needs a string.
SERVER_ERROR_CODES = (
    "bad_request",
    "unknown_type",
    "not_joined",
    "already_joined",
    "forbidden",
    "not_found",
    "negotiation_failed",
    "rate_limited",
    "in_lobby",
)
LOCAL_ERROR_CODES = (
    "not_connected",
    "disconnected",
    "timeout",
    "bad_source",
    "media_denied",
    "media_not_found",
    "media_busy",
    "media_failed",
    "media_unavailable",
    "unknown",
)
# The codes after which the page does not reconnect and shows an end screen.
FINAL_CLOSE_CODES = (1000, 1002, 1003, 1009, 4000, 4401, 4403, 4404, 4409, 4410, 4429)
ROLES = ("teacher", "assistant", "admin", "student", "observer", "unknown")
LEFT_REASONS = ("left", "removed", "network", "replaced", "denied", "ended")
CONNECTION_STATES = ("idle", "connecting", "connected", "reconnecting", "closed")
# What admin.js says for an API error, by HTTP status (0: the server was not reached).
ADMIN_ERRORS = (
    "network",
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "unavailable",
    "unknown",
)

# Keys the code builds at run time (`error.${code}` and the like).
DYNAMIC_KEYS = (
    [f"error.{code}" for code in SERVER_ERROR_CODES + LOCAL_ERROR_CODES]
    + [f"close.{code}.{part}" for code in FINAL_CLOSE_CODES for part in ("title", "text")]
    + ["close.other.title", "close.other.text"]
    + [f"role.{role}" for role in ROLES]
    + [
        f"media.{s}.{state}"
        for s in ("microphone", "camera", "screen")
        for state in ("on", "muted")
    ]
    + [f"quality.{level}" for level in ("good", "fair", "poor")]
    + [f"announce.left.{reason}" for reason in LEFT_REASONS]
    + [f"connection.{state}" for state in CONNECTION_STATES]
    # the administrators' pages (admin.js): statuses, lesson kinds and states, errors
    + [f"admin.status.{status}" for status in ("present", "late", "partial", "absent")]
    + [f"admin.kind.{kind}" for kind in ("lecture", "seminar", "consultation", "defence", "exam")]
    + [f"admin.lesson_state.{s}" for s in ("scheduled", "live", "ended", "cancelled")]
    + [f"admin.quality.{level}" for level in ("good", "fair", "poor")]
    + [f"admin.error.{name}_{part}" for name in ADMIN_ERRORS for part in ("title", "text")]
)

# The hooks the end-to-end tests use: fixed ones in lesson.html, per-participant
# ones built by the scripts (as template literals `prefix-${id}`).
STATIC_TEST_IDS = (
    "join",
    "chat-input",
    "chat-send",
    "chat-list",
    "hand",
    "mic",
    "camera",
    "share-screen",
    "end-lesson",
    "main-video",
    "screen-video",
    "recording-badge",
    "connection-state",
    "quality",
)
DYNAMIC_TEST_ID_PREFIXES = (
    "participant",
    "floor-mic",
    "floor-av",
    "take-floor",
    "mute",
    "remove",
    "lower-hand",
    "admit",
    "deny",
    "video",
)

# An absolute URL (http, https, ws, wss) or an ICE server address (stun:, turn:).
# The page builds its own WebSocket URL from location; it never names a host.
EXTERNAL_URL = re.compile(r"(?i)\b(?:(?:https?|wss?)://|(?:stuns?|turns?):[\w\[])[^\s\"'`)]*")

VOID_ELEMENTS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input",
    "link", "meta", "source", "track", "wbr",
}  # fmt: skip


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    def text(self, skip: tuple[str, ...] = ()) -> str:
        parts: list[str] = []
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif child.tag not in skip:
                parts.append(child.text(skip))
        return " ".join(" ".join(parts).split())

    def walk(self):  # type: ignore[no-untyped-def]
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def ancestors(self):  # type: ignore[no-untyped-def]
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID_ELEMENTS:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse_html(path: Path) -> Node:
    builder = TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8"))
    builder.close()
    return builder.root


def load_strings() -> dict[str, dict[str, str]]:
    return {
        lang: json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        for lang in LANGUAGES
    }


@pytest.fixture(scope="module")
def strings() -> dict[str, dict[str, str]]:
    return load_strings()


def test_the_pages_and_modules_exist() -> None:
    for name in (
        "index.html",
        "lesson.html",
        "admin.html",
        "css/sabaq.css",
        "css/admin.css",
        "js/protocol.js",
        "js/i18n.js",
        "js/admin.js",
    ):
        assert (WEB / name).is_file(), name


def test_every_language_has_the_same_keys(strings: dict[str, dict[str, str]]) -> None:
    reference = set(strings["en"])
    for lang in LANGUAGES:
        keys = set(strings[lang])
        assert keys == reference, (
            f"{lang}.json differs from en.json: missing {sorted(reference - keys)}, "
            f"extra {sorted(keys - reference)}"
        )


def test_no_value_is_empty(strings: dict[str, dict[str, str]]) -> None:
    for lang, table in strings.items():
        for key, value in table.items():
            assert isinstance(value, str) and value.strip(), f"{lang}.json: {key} is empty"


def test_placeholders_match_across_languages(strings: dict[str, dict[str, str]]) -> None:
    for key, english in strings["en"].items():
        wanted = set(re.findall(r"\{(\w+)\}", english))
        for lang in LANGUAGES:
            found = set(re.findall(r"\{(\w+)\}", strings[lang].get(key, english)))
            assert found == wanted, f"{lang}.json: {key} has {found}, en has {wanted}"


def test_kazakh_is_written_in_kazakh_cyrillic(strings: dict[str, dict[str, str]]) -> None:
    # A copy of the Russian file would pass the key checks; Kazakh letters would be absent.
    kazakh_letters = set("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
    text = "".join(strings["kk"].values())
    assert len(kazakh_letters & set(text)) >= 6
    differing = [k for k in strings["kk"] if strings["kk"][k] != strings["ru"][k]]
    assert len(differing) > 0.8 * len(strings["kk"])


def html_keys() -> set[str]:
    keys: set[str] = set()
    for path in HTML_FILES:
        for node in parse_html(path).walk():
            for attribute in (
                "data-i18n",
                "data-i18n-aria-label",
                "data-i18n-placeholder",
                "data-i18n-title",
            ):
                if node.attrs.get(attribute):
                    keys.add(node.attrs[attribute])
    return keys


def test_every_html_key_exists(strings: dict[str, dict[str, str]]) -> None:
    keys = html_keys()
    assert keys, "the pages use no translation keys at all"
    missing = sorted(keys - set(strings["en"]))
    assert not missing, f"data-i18n keys missing from the translations: {missing}"


def js_source(path: Path) -> str:
    # Comments may quote keys as examples; only code counts.
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"(?m)^\s*//.*$", "", text)


def test_every_t_literal_in_js_exists(strings: dict[str, dict[str, str]]) -> None:
    known = set(strings["en"])
    used: set[tuple[str, str]] = set()
    call = re.compile(r"""\bt\(\s*(["'])([^"'`$]+)\1""")
    for path in JS_FILES:
        for match in call.finditer(js_source(path)):
            used.add((path.name, match.group(2)))
    assert used, "no t('key') call found: the pattern or the code changed"
    missing = sorted(f"{name}: {key}" for name, key in used if key not in known)
    assert not missing, f"t() keys missing from the translations: {missing}"


def test_every_key_like_literal_in_js_exists(strings: dict[str, dict[str, str]]) -> None:
    # Keys also travel as plain strings (h(..., {i18n: "people.you"}), setText(el, "...")):
    # any literal whose first segment is a translation namespace must be a key.
    known = set(strings["en"])
    namespaces = {key.split(".")[0] for key in known}
    literal = re.compile(r"""(["'])([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)\1""")
    missing = []
    for path in JS_FILES:
        for match in literal.finditer(js_source(path)):
            key = match.group(2)
            if key.split(".")[0] in namespaces and key not in known:
                missing.append(f"{path.name}: {key}")
    assert not missing, f"translation keys missing: {sorted(set(missing))}"


def test_codes_and_other_dynamic_keys_are_translated(strings: dict[str, dict[str, str]]) -> None:
    missing = [key for key in DYNAMIC_KEYS if key not in strings["en"]]
    assert not missing, f"keys built at run time are missing: {missing}"


def test_no_url_to_another_host() -> None:
    # Same-origin paths only: no CDN, web font, analytics or public STUN server.
    offenders = []
    for path in sorted(WEB.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8")
            for match in EXTERNAL_URL.finditer(text):
                offenders.append(f"{path.relative_to(WEB)}: {match.group(0)}")
            if path.suffix == ".css":
                # Stylesheets may load only same-origin files (and no web fonts at all).
                for match in re.finditer(r"url\(\s*[\"']?(//[^)]*)", text):
                    offenders.append(f"{path.relative_to(WEB)}: {match.group(1)}")
                assert "@font-face" not in text and "@import" not in text, path.name
    assert not offenders, f"URLs to other hosts in web/: {offenders}"


def test_every_imported_module_exists() -> None:
    pattern = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"']+)\1""")
    checked = 0
    for path in JS_FILES:
        for match in pattern.finditer(js_source(path)):
            target = (path.parent / match.group(2)).resolve()
            assert target.is_file(), f"{path.name} imports {match.group(2)}, which does not exist"
            checked += 1
    assert checked > 0


def test_every_page_asset_exists() -> None:
    # The server maps /static/... to web/...
    for path in HTML_FILES:
        for node in parse_html(path).walk():
            for attribute in ("src", "href"):
                value = node.attrs.get(attribute, "")
                assert not value.startswith("//"), f"{path.name}: {value} names another host"
                if value.startswith("/static/"):
                    target = WEB / value.removeprefix("/static/")
                    assert target.is_file(), f"{path.name}: {value} does not exist"
                if node.tag == "script":
                    assert node.attrs.get("type") == "module" or not node.attrs.get("src"), (
                        f"{path.name}: scripts are ES modules"
                    )


def accessible_name(node: Node, by_id: dict[str, Node], labels: dict[str, Node]) -> str:
    for attribute in ("aria-label", "title"):
        if node.attrs.get(attribute, "").strip():
            return node.attrs[attribute].strip()
    labelledby = node.attrs.get("aria-labelledby", "").split()
    if labelledby:
        return " ".join(by_id[i].text() for i in labelledby if i in by_id).strip()
    if node.tag == "button":
        return node.text()
    if node.tag == "input" and node.attrs.get("type") in ("submit", "button", "reset"):
        return node.attrs.get("value", "").strip()
    element_id = node.attrs.get("id")
    if element_id and element_id in labels:
        return labels[element_id].text(skip=("select", "option"))
    for ancestor in node.ancestors():
        if ancestor.tag == "label":
            return ancestor.text(skip=("select", "option"))
    return ""


@pytest.mark.parametrize("path", HTML_FILES, ids=lambda p: p.name)
def test_every_control_has_an_accessible_name(path: Path) -> None:
    root = parse_html(path)
    nodes = list(root.walk())
    by_id = {n.attrs["id"]: n for n in nodes if "id" in n.attrs}
    labels = {n.attrs["for"]: n for n in nodes if n.tag == "label" and n.attrs.get("for")}
    controls = [
        n
        for n in nodes
        if n.tag in ("button", "select", "textarea")
        or (n.tag == "input" and n.attrs.get("type", "text") != "hidden")
    ]
    assert controls
    unnamed = [
        f"<{n.tag} id={n.attrs.get('id')!r} data-testid={n.attrs.get('data-testid')!r}>"
        for n in controls
        if not accessible_name(n, by_id, labels)
    ]
    assert not unnamed, f"{path.name}: controls without an accessible name: {unnamed}"


@pytest.mark.parametrize("path", HTML_FILES, ids=lambda p: p.name)
def test_referenced_ids_exist(path: Path) -> None:
    nodes = list(parse_html(path).walk())
    ids = [n.attrs["id"] for n in nodes if "id" in n.attrs]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate ids"
    for node in nodes:
        for attribute in ("for", "aria-labelledby", "aria-describedby", "aria-controls"):
            for ref in node.attrs.get(attribute, "").split():
                assert ref in ids, f"{path.name}: {attribute}={ref!r} names no element"


@pytest.mark.parametrize(
    ("script", "page"),
    [("classroom.js", "lesson.html"), ("landing.js", "index.html"), ("admin.js", "admin.html")],
)
def test_scripts_find_their_elements(script: str, page: str) -> None:
    ids = {n.attrs["id"] for n in parse_html(WEB / page).walk() if "id" in n.attrs}
    source = js_source(WEB / "js" / script)
    # ... or that the script builds itself: h("h2", {id: "report-heading"})
    ids |= {m.group(2) for m in re.finditer(r"""\bid:\s*(["'])([\w-]+)\1""", source)}
    wanted = set(re.findall(r"""\bbyId\((["'])([\w-]+)\1\)""", source))
    missing = sorted(name for _, name in wanted if name not in ids)
    assert not missing, f"{script} looks up ids that {page} lacks: {missing}"


def test_test_hooks_exist() -> None:
    lesson = parse_html(WEB / "lesson.html")
    test_ids = {n.attrs["data-testid"] for n in lesson.walk() if "data-testid" in n.attrs}
    missing = [t for t in STATIC_TEST_IDS if t not in test_ids]
    assert not missing, f"lesson.html lacks data-testid {missing}"
    scripts = "".join(js_source(p) for p in JS_FILES)
    for prefix in DYNAMIC_TEST_ID_PREFIXES:
        assert re.search(rf"{re.escape(prefix)}-\$\{{", scripts) or (
            re.search(rf"""testid\(\s*["']{re.escape(prefix)}["']""", scripts)
            or re.search(rf"""button\(\s*["']{re.escape(prefix)}["']""", scripts)
        ), f"no script builds data-testid {prefix}-<id>"
    participant_row = re.search(r"participant-\$\{id\}`[^\n]*hand", scripts)
    assert participant_row, "participant rows carry data-hand"


def test_chat_list_is_a_live_region() -> None:
    lesson = parse_html(WEB / "lesson.html")
    chat = next(n for n in lesson.walk() if n.attrs.get("data-testid") == "chat-list")
    assert chat.attrs.get("aria-live") == "polite"


def test_remote_media_plays_inline_and_is_not_muted_for_audio() -> None:
    lesson = parse_html(WEB / "lesson.html")
    for node in lesson.walk():
        if node.tag == "video":
            assert "playsinline" in node.attrs and "autoplay" in node.attrs, node.attrs
    stage = (WEB / "js" / "stage.js").read_text(encoding="utf-8")
    audio = re.search(r'h\("audio", \{([^}]*)\}', stage)
    assert audio and "muted" not in audio.group(1), "student audio elements must not be muted"


def test_no_public_stun_server_by_default() -> None:
    protocol = js_source(WEB / "js" / "protocol.js")
    assert "stun:" not in protocol.lower()
    assert re.search(r"iceServers\)\s*\?\s*iceServers\s*:\s*\[\]", protocol)


# The administrators' pages: hooks that tests/test_admin_browser.py and registrars' tools use.
ADMIN_STATIC_TEST_IDS = ("admin-view", "admin-no-token", "admin-find-lesson", "admin-verify-link")
ADMIN_SCRIPT_TEST_IDS = (
    "admin-lesson-table",
    "admin-timeline",
    "admin-course-table",
    "admin-students-table",
    "admin-verify-button",
    "admin-verify-result",
    "admin-csv",
)


def test_admin_hooks_exist() -> None:
    admin = parse_html(WEB / "admin.html")
    test_ids = {n.attrs["data-testid"] for n in admin.walk() if "data-testid" in n.attrs}
    missing = [t for t in ADMIN_STATIC_TEST_IDS if t not in test_ids]
    assert not missing, f"admin.html lacks data-testid {missing}"
    scripts = "".join(js_source(p) for p in JS_FILES if p.name.startswith("admin"))
    for test_id in ADMIN_SCRIPT_TEST_IDS:
        assert re.search(rf"""["']{test_id}["']""", scripts), f"no script builds {test_id}"
    assert "admin-person-${" in scripts, "rows of the lesson table carry admin-person-<user_id>"


@pytest.mark.parametrize("path", HTML_FILES, ids=lambda p: p.name)
def test_no_inline_script_or_style(path: Path) -> None:
    # The server's Content-Security-Policy allows neither: they would be blocked.
    for node in parse_html(path).walk():
        assert node.tag != "style", f"{path.name}: a <style> element"
        assert "style" not in node.attrs, f"{path.name}: a style attribute on <{node.tag}>"
        assert not any(name.startswith("on") for name in node.attrs), (
            f"{path.name}: an inline event handler on <{node.tag}>"
        )
        if node.tag == "script":
            assert node.attrs.get("src") and not node.text(), f"{path.name}: an inline script"
