// The lesson link and its token.
//
// The link is /l/{lesson_id}#token=eyJ...: the token sits in the fragment,
// which browsers never send to servers, so no access log or proxy sees it. On
// load it is moved to sessionStorage (one key per lesson, gone when the tab
// closes) and removed from the address bar, so that it is neither bookmarked
// nor shown on a projected screen.

const STORAGE_PREFIX = "sabaq.token.";

// /l/{lesson_id} (the server's route); ?lesson= as well, for pages served elsewhere.
export function lessonIdFromLocation(loc = location) {
  const match = loc.pathname.match(/^\/l\/([^/]+)\/?$/);
  if (match) {
    try {
      return decodeURIComponent(match[1]);
    } catch {
      return null;
    }
  }
  return new URLSearchParams(loc.search).get("lesson");
}

function storageKey(lessonId) {
  return STORAGE_PREFIX + lessonId;
}

// Returns the lesson's token (from the fragment, else from this tab's storage), or null.
export function takeToken(lessonId) {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromLink = fragment.get("token");
  if (fromLink) {
    try {
      sessionStorage.setItem(storageKey(lessonId), fromLink);
    } catch {
      // storage disabled: the token still works for this page load
    }
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    return fromLink;
  }
  try {
    return sessionStorage.getItem(storageKey(lessonId));
  } catch {
    return null;
  }
}

export function forgetToken(lessonId) {
  try {
    sessionStorage.removeItem(storageKey(lessonId));
  } catch {
    // nothing stored
  }
}

// The JWT's payload (the middle part, base64url JSON), for display only: the
// server verifies the signature; the page only picks the view (role, name).
export function tokenClaims(token) {
  try {
    const part = String(token).split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}
