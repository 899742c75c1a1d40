// Folders at a glance: the drop folders (GET /v2/drops, admin keys only), read-only: what is
// waiting, skipped and why, being converted, and the latest converted and failed files.
// A drop's job belongs to no key, so the event stream never tells of it: the view is asked
// again every 10 s while it is on screen and the page visible, and by its Refresh button.
// The admin's asks spend no calls; still, after 30 minutes without a key press or a click
// the asking pauses (nobody is looking), and the next one resumes it.

import { ApiError, get } from "./api.js";
import { $, clear, el, humanSize } from "./dom.js";

const EVERY_MS = 10_000;
const IDLE_MS = 30 * 60_000;
const SHOWN = 10; // of each status, until "Show all"
const STATUSES = [
  ["waiting", "Waiting"],
  ["skipped", "Skipped"],
  ["processing", "Processing"],
  ["finished", "Recently converted"],
  ["failed", "Failed"],
];
// What each status's two times mean.
const TIMES = {
  waiting: ["found", null],
  skipped: [null, null],
  processing: ["taken", null],
  finished: ["taken", "converted"],
  failed: ["taken", "failed"],
};

let generation = 0; // a new sign-in (or forget) makes answers of the previous one stale
let timer = null;
let loading = false;
let loadedAt = 0;
let usedAt = Date.now();
let paused = false;
let updated = "";
let last = ""; // the answer last shown: the same answer is not drawn again
let shown = null;
const opened = new Map(); // status -> the person's open/closed choice, kept across refreshes
const expanded = new Set(); // statuses shown in full

export function showFolders(me) {
  generation += 1;
  clearTimeout(timer);
  timer = null;
  paused = false;
  last = "";
  shown = null;
  const section = $("folders");
  section.hidden = !(me && me.admin);
  clear($("folders-body"));
  $("folders-error").textContent = "";
  $("folders-updated").textContent = "";
  if (section.hidden) return;
  wire();
  load();
}

let wired = false;
function wire() {
  if (wired) return;
  wired = true;
  $("folders-refresh").addEventListener("click", () => load());
  document.addEventListener("visibilitychange", () => {
    if (onScreen() && Date.now() - loadedAt >= EVERY_MS) load();
  });
  for (const type of ["keydown", "pointerdown", "wheel", "touchstart"]) {
    document.addEventListener(type, used, { capture: true, passive: true });
  }
}

function used() {
  usedAt = Date.now();
  if (!paused || $("folders").hidden) return;
  paused = false;
  if (onScreen()) load();
  else schedule(generation);
}

function onScreen() {
  const section = $("folders");
  return !document.hidden && !section.hidden && section.offsetParent !== null;
}

function schedule(gen) {
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    if (gen !== generation) return;
    if (Date.now() - usedAt >= IDLE_MS) {
      paused = true;
      $("folders-updated").textContent = `${updated} Paused: nobody used the page for 30 minutes; a key press or a click resumes.`;
    } else if (onScreen()) load();
    else schedule(gen); // off screen: nothing asked, looked at again in 10 s
  }, EVERY_MS);
}

async function load() {
  if (loading) return;
  loading = true;
  const gen = generation;
  try {
    const answer = await get("/v2/drops?per_page=1000");
    if (gen !== generation) return;
    $("folders-error").textContent = "";
    render(answer);
    loadedAt = Date.now();
    updated = `Updated ${new Date().toLocaleTimeString()}.`;
    $("folders-updated").textContent = updated;
  } catch (err) {
    if (gen !== generation) return;
    $("folders-error").textContent = err instanceof ApiError ? err.lines.join(" ") : String(err.message);
  } finally {
    loading = false;
    if (gen === generation) schedule(gen);
  }
}

function render(answer) {
  const seen = JSON.stringify([answer.data, answer.meta && answer.meta.counts, answer.meta && answer.meta.enabled]);
  if (seen === last) return;
  last = seen;
  shown = answer;
  const meta = answer.meta || {};
  const counts = meta.counts || {};
  const most = meta.max_each || Infinity;
  const focused = focusKey(document.activeElement);
  const body = clear($("folders-body"));
  const rules = meta.rules || [];
  body.append(el("p", { className: "muted" }, meta.enabled === false
    ? "Drop folders are off on this server (drop_enabled)."
    : `Rules: ${rules.length ? rules.join(", ") : "none"}.`));
  body.append(el("ul", { className: "counts", "aria-label": "Files by status" },
    STATUSES.map(([status, label]) => el("li", { "data-status": status },
      el("strong", { className: "count" }, (counts[status] ?? 0) >= most ? `${most}+` : String(counts[status] ?? 0)),
      ` ${label.toLowerCase()}`))));
  const byStatus = Object.fromEntries(STATUSES.map(([s]) => [s, []]));
  for (const entry of answer.data || []) if (byStatus[entry.status]) byStatus[entry.status].push(entry);
  for (const [status, label] of STATUSES) body.append(group(status, label, byStatus[status], counts[status] ?? 0));
  restoreFocus(focused);
}

function group(status, label, entries, count) {
  const open = opened.has(status) ? opened.get(status) : entries.length > 0;
  const details = el("details", { className: "drop-group", "data-status": status, open });
  details.addEventListener("toggle", () => opened.set(status, details.open));
  details.append(el("summary", { "data-focus": `summary:${status}` }, `${label} (${entries.length})`));
  if (entries.length === 0) {
    details.append(el("p", { className: "muted" }, "None."));
    return details;
  }
  const all = expanded.has(status);
  const list = el("ul", { className: "files", "aria-label": label });
  for (const entry of all ? entries : entries.slice(0, SHOWN)) list.append(item(entry));
  details.append(list);
  if (entries.length > SHOWN) {
    details.append(el("button", {
      type: "button", className: "quiet", "data-focus": `more:${status}`,
      onclick: () => {
        if (all) expanded.delete(status);
        else expanded.add(status);
        last = "";
        render(shown);
      },
    }, all ? `Show the first ${SHOWN}` : `Show all ${entries.length}`));
  }
  if (count > entries.length) {
    details.append(el("p", { className: "muted" }, `The latest ${entries.length}; convertd drops (on the server) and the folders hold the rest.`));
  }
  return details;
}

function item(entry) {
  const state = { finished: "finished", failed: "failed" }[entry.status] || entry.status;
  const facts = [`rule ${entry.rule}`];
  if (entry.output_format) facts.push(`to ${entry.output_format}`);
  if (entry.size !== null && entry.size !== undefined) facts.push(humanSize(entry.size));
  const li = el("li", { className: "file drop", "data-state": state, "data-status": entry.status },
    el("div", { className: "head" }, el("span", { className: "name" }, entry.file),
      el("span", { className: "muted" }, facts.join(" · "))));
  if (entry.output) li.append(el("p", { className: "output" }, "→ ", el("span", { className: "name" }, entry.output)));
  if (entry.message) {
    li.append(entry.status === "failed"
      ? el("div", { className: "error" }, el("p", { className: "message" }, entry.message))
      : el("p", { className: "message muted" }, entry.message));
  }
  const [first, second] = TIMES[entry.status] || [];
  const when = [];
  if (first && entry.created_at) when.push(time(first, entry.created_at));
  if (second && entry.ended_at) when.push(time(second, entry.ended_at));
  if (entry.job_id) when.push(el("span", {}, `job ${entry.job_id}`));
  if (when.length) {
    const line = el("p", { className: "muted when" });
    when.forEach((part, i) => line.append(...(i ? [" · ", part] : [part])));
    li.append(line);
  }
  return li;
}

function time(label, iso) {
  return el("span", {}, `${label} `, el("time", { datetime: iso }, new Date(iso).toLocaleString()));
}

// A refresh draws the view again: the keyboard's place in it is kept.
function focusKey(node) {
  return node && node.closest && node.closest("#folders-body") ? node.dataset.focus || null : null;
}

function restoreFocus(key) {
  if (!key) return;
  const node = $("folders-body").querySelector(`[data-focus="${key}"]`);
  if (node) node.focus();
}
