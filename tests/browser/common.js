// Helpers shared by the browser test pages.

const GATHERING_TIMEOUT_MS = 10000;

// Resolves when ICE gathering is complete, so that the SDP carries every candidate.
export function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`ICE gathering did not complete in ${GATHERING_TIMEOUT_MS} ms`)),
      GATHERING_TIMEOUT_MS,
    );
    pc.addEventListener("icegatheringstatechange", function onChange() {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", onChange);
        resolve();
      }
    });
  });
}

// POSTs JSON and returns the JSON answer; a non-2xx answer becomes an Error with its text.
export async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${path} answered ${response.status}: ${text}`);
  }
  return JSON.parse(text);
}
