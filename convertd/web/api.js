// The key-authenticated API, as the page uses it. The key goes in the Authorization header,
// never in a URL; the event stream is read with fetch (EventSource cannot send headers).

const STORAGE = "convertd.key";

export class ApiError extends Error {
  constructor(status, body) {
    // v1 answers {error, message, hint}; v2 {message, code, errors}: shown as they are.
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }

  get lines() {
    // A field's problem only when the message does not already say it (v2's usually does).
    const out = [this.message];
    if (this.body.hint) out.push(this.body.hint);
    for (const [field, messages] of Object.entries(this.body.errors || {})) {
      if (!this.message.includes(field)) out.push(`${field}: ${[].concat(messages).join(" ")}`);
    }
    return out;
  }
}

export const key = {
  get: () => localStorage.getItem(STORAGE),
  set: (value) => localStorage.setItem(STORAGE, value),
  forget: () => localStorage.removeItem(STORAGE),
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The seconds a 429 asks to wait (its Retry-After; same-origin, so fetch can read it).
export function retryAfter(resp) {
  const seconds = parseInt(resp.headers.get("Retry-After"), 10);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 1;
}

// Wait out a rate limit, telling onWait(seconds left) each second and onWait(0) at the end.
export async function waitOut(seconds, onWait) {
  for (let left = seconds; left > 0; left -= 1) {
    if (onWait) onWait(left);
    await sleep(1000);
  }
  if (onWait) onWait(0);
}

// One API call; a 429 is waited out (Retry-After) and the call made again, so a batch on a
// small plan queues rather than fails.
export async function call(method, path, body, apiKey = key.get(), onWait = null) {
  const headers = { Authorization: `Bearer ${apiKey}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  for (let tries = 0; ; tries += 1) {
    try {
      resp = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, { message: "The server did not answer; try again." });
    }
    if (resp.status !== 429 || tries >= 30) break;
    await waitOut(retryAfter(resp), onWait);
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (path, apiKey, onWait) => call("GET", path, undefined, apiKey, onWait);
export const post = (path, body, onWait) =>
  call("POST", path, body === undefined ? {} : body, undefined, onWait);
export const del = (path) => call("DELETE", path);

// The API's error for an answer that is not ok (its JSON body, when it has one).
async function failure(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  return new ApiError(resp.status, body);
}

// POST a file to an import/upload task's signed form (no key: the form is the permission).
export async function upload(form, file, path) {
  const data = new FormData();
  for (const [name, value] of Object.entries(form.parameters || {})) data.append(name, value);
  data.append("file", file, file.name);
  let resp;
  try {
    resp = await fetch(path, { method: "POST", body: data });
  } catch {
    throw new ApiError(0, { message: "The server did not answer; try again." });
  }
  if (!resp.ok) throw await failure(resp);
}

// Read /v2/events until `signal` aborts, calling onEvent(name, data) for each message and
// onState("open" | "closed", detail) as the stream comes and goes; reconnects after `retry`.
export async function listen(onEvent, onState, signal) {
  let retry = 3000;
  while (!signal.aborted) {
    try {
      const resp = await fetch("/v2/events", {
        headers: { Authorization: `Bearer ${key.get()}`, Accept: "text/event-stream" },
        signal,
      });
      if (resp.status === 429) {
        const seconds = retryAfter(resp);
        onState("closed", `Rate-limited: reconnecting in ${seconds} s.`);
        await sleep(seconds * 1000);
        continue;
      }
      if (!resp.ok) throw await failure(resp);
      onState("open");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") name = text;
            else if (field === "data") data.push(text);
            else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
          }
          if (data.length) {
            try {
              onEvent(name, JSON.parse(data.join("\n")));
            } catch (err) {
              console.warn("bad event", err);
            }
          }
        }
      }
      onState("closed", "The event stream ended; reconnecting.");
    } catch (err) {
      if (signal.aborted) return;
      onState("closed", err instanceof ApiError ? err.lines.join(" ")
        : "The server is unreachable — reconnecting…");
    }
    await sleep(retry);
  }
}
