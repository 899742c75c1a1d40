// The page: sign in with a key, then convert (drop or pick files) and see the history; one
// event stream tells every entry of its tasks.

import { ApiError, get, key, listen, post } from "./api.js";
import { $, clear, el, local } from "./dom.js";
import { Entry } from "./entry.js";
import { Catalog } from "./formats.js";
import { History } from "./history.js";
import { showFolders } from "./folders.js";

const byTask = new Map(); // task id -> entry
const early = new Map(); // events of tasks not known yet (a fast task may beat its POST's answer)
const entries = new Set();
let stream = null;
let usageTimer = null;

const hooks = {
  catalog: null,
  register(entry, taskId) {
    if (!byTask.has(taskId)) byTask.set(taskId, new Set());
    byTask.get(taskId).add(entry);
    const task = early.get(taskId);
    if (task) {
      early.delete(taskId);
      entry.onTask(task);
    }
  },
  forget(entry) {
    entries.delete(entry);
    for (const [id, set] of byTask) {
      set.delete(entry);
      if (set.size === 0) byTask.delete(id);
    }
    entry.node.remove();
    updateBatch();
  },
  changed(entry) {
    updateBatch();
    if (entry.sent) refreshUsageSoon();
  },
  applyToAll(source) {
    const raw = source.form.raw();
    for (const entry of entries) {
      if (entry === source || entry.sent || entry.filetype !== source.filetype) continue;
      if (![...entry.choices.presets, ...entry.choices.formats, ...entry.choices.operations].some((c) => c.value === source.select.value)) continue;
      entry.select.value = source.select.value;
      entry.renderOptions();
      entry.form.setRaw(raw);
    }
  },
};
const history = new History(hooks, (entry) => entries.add(entry));

function onEvent(name, data) {
  if (data.task) {
    const task = { ...data.task, event: name };
    const known = byTask.get(task.id) || (task.retry_of_task_id && byTask.get(task.retry_of_task_id));
    if (known) for (const entry of [...known]) entry.onTask(task);
    else {
      early.set(task.id, task);
      if (early.size > 500) early.delete(early.keys().next().value);
    }
  } else if (data.job && name === "job.deleted") {
    for (const entry of [...entries]) if (entry.job && entry.job.id === data.job.id) hooks.forget(entry);
  }
  if (name.startsWith("job.")) history.jobChanged(data.job);
}

let streamLost = false;
function onStreamState(state, detail) {
  $("connection").textContent = state === "open" ? "Live updates on." : detail || "";
  if (state === "closed") streamLost = true;
  else if (streamLost) {
    // Nothing is replayed after a reconnect: ask what the jobs on the page did meanwhile.
    streamLost = false;
    for (const entry of entries) if (entry.job) entry.refresh().catch(() => null);
  }
}

function updateBatch() {
  const drafts = [...entries].filter((e) => !e.sent && e.choices && e.choices.formats.length);
  const done = [...entries].filter((e) => e.sent && e.node.dataset.state === "finished" && !e.fromHistory);
  $("batch").hidden = entries.size === 0;
  $("convert-all").hidden = drafts.length === 0;
  $("convert-all").textContent = drafts.length > 1 ? `Convert ${drafts.length} files` : "Convert";
  $("download-all").hidden = done.length < 2;
  const picked = drafts.filter((e) => e.mergeBox && e.mergeBox.checked);
  $("merge").hidden = drafts.filter((e) => e.mergeBox).length < 2;
  $("merge").disabled = picked.length < 2;
  $("merge").textContent = picked.length >= 2 ? `Merge ${picked.length} selected into one PDF` : "Merge selected into one PDF";
  for (const entry of drafts) {
    if (!entry.applyAll) continue;
    const same = drafts.filter((e) => e.filetype === entry.filetype).length;
    entry.applyAll.hidden = same < 2;
    entry.applyAll.textContent = `Apply to all ${same} ${entry.filetype} files`;
  }
}

function addFiles(files) {
  if (!hooks.catalog) return;
  const list = $("files");
  for (const file of files) {
    const entry = Entry.draft(file, hooks);
    entries.add(entry);
    list.append(entry.node);
  }
  updateBatch();
}

async function mergeSelected() {
  const picked = [...entries].filter((e) => !e.sent && e.mergeBox && e.mergeBox.checked);
  if (picked.length < 2) return;
  const merged = Entry.merge(picked, hooks);
  for (const e of picked) hooks.forget(e);
  entries.add(merged);
  $("files").append(merged.node);
  await merged.submitMerge($("tag-input").value.trim());
}

async function convertAll() {
  $("batch-error").textContent = "";
  const tag = $("tag-input").value.trim();
  const drafts = [...entries].filter((e) => !e.sent && e.choices && e.choices.formats.length);
  // One after another: a batch on a small plan queues behind its rate limit, file by file.
  for (const e of drafts) e.setStatus("queued");
  for (const e of drafts) await e.submit(tag);
}

// Every finished file in one ZIP: an archive task over the convert tasks, exported, waited
// for on the server (/sync: it answers when the task ends, nothing polls).
async function downloadAll() {
  const button = $("download-all");
  button.disabled = true;
  $("batch-error").textContent = "";
  try {
    const done = [...entries].filter((e) => e.sent && e.node.dataset.state === "finished" && !e.fromHistory);
    const { data: archive } = await post("/v2/archive", {
      input: done.map((e) => e.tasks.convert.id), output_format: "zip", filename: "convertd.zip",
    });
    const { data: exp } = await post("/v2/export/url", { input: [archive.id] });
    const { data: task } = await get(`/sync/v2/tasks/${exp.id}`);
    if (task.status !== "finished") throw new ApiError(0, { message: task.message || `The archive is ${task.status}.` });
    const file = task.result.files[0];
    const link = el("a", { href: local(file.url), download: file.filename, id: "zip-link", className: "button" }, `Download ${file.filename}`);
    const old = $("zip-link");
    if (old) old.remove();
    button.after(link);
    link.click();
  } catch (err) {
    $("batch-error").textContent = err instanceof ApiError ? err.lines.join(" ") : String(err.message);
  } finally {
    button.disabled = false;
  }
}

// The usage line costs a call: asked at most every USAGE_EVERY ms, however busy the page.
const USAGE_EVERY = 10_000;
let usageWanted = false;
let usageAsked = 0;
function refreshUsageSoon() {
  usageWanted = true;
  if (usageTimer) return;
  const wait = Math.max(500, usageAsked + USAGE_EVERY - Date.now());
  usageTimer = setTimeout(async () => {
    usageTimer = null;
    if (usageWanted) await refreshUsage().catch(() => null);
  }, wait);
}

async function refreshUsage() {
  usageWanted = false;
  usageAsked = Date.now();
  const me = await get("/v1/keys/me");
  const r = me.rate_limits || {};
  const limit = r.calls_per_day ? ` of ${r.calls_per_day}` : " (no daily limit)";
  $("usage").textContent = `${me.name} · ${me.plan} · ${r.used_today ?? me.usage_count} calls today${limit}`;
  return me;
}

function show(screen) {
  for (const name of ["convert", "history"]) {
    $(name).hidden = name !== screen;
    $(`show-${name}`).setAttribute("aria-pressed", String(name === screen));
  }
  if (screen === "history") history.load();
}

// Sign in with a key typed, or `saved` in this browser: only a 401/403 says the key is bad;
// a 429 is waited out, and with a saved key anything else is tried again until it works.
async function signIn(value, saved = false) {
  const error = $("signin-error");
  clear(error);
  const waiting = (left) => {
    error.textContent = left ? `Rate-limited, retrying in ${left} s.` : "";
  };
  let me;
  let formats;
  let presets;
  try {
    me = await get("/v1/keys/me", value, waiting);
    [formats, presets] = await Promise.all([
      get("/v1/formats", value, waiting),
      get("/v2/presets?per_page=100", value, waiting).catch(() => ({ data: [] })),
    ]);
  } catch (err) {
    const refused = err instanceof ApiError && (err.status === 401 || err.status === 403);
    if (saved && !refused) {
      error.textContent = err.status === 0 ? "The server is unreachable — reconnecting…"
        : `${err.message} Trying again in 5 s.`;
      setTimeout(() => signIn(value, true), 5000);
      return true;
    }
    const lines = err instanceof ApiError ? err.lines : [String(err.message)];
    error.append(...lines.map((line) => el("span", { className: "line" }, line)));
    return false;
  }
  key.set(value);
  hooks.catalog = new Catalog(formats.filetypes, presets.data || []);
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("account").hidden = false;
  show("convert");
  await refreshUsage().catch(() => null);
  stream = new AbortController();
  listen(onEvent, onStreamState, stream.signal);
  showFolders(me);
  return true;
}

function forget() {
  key.forget();
  if (stream) stream.abort();
  for (const entry of [...entries]) hooks.forget(entry);
  hooks.catalog = null;
  $("key-input").value = "";
  $("signin").hidden = false;
  $("nav").hidden = true;
  $("account").hidden = true;
  $("convert").hidden = true;
  $("history").hidden = true;
  showFolders(null);
  $("key-input").focus();
}

function setUpDrop() {
  const overlay = $("drop-overlay");
  let depth = 0;
  const signedIn = () => hooks.catalog !== null;
  document.addEventListener("dragenter", (e) => {
    if (!signedIn() || !e.dataTransfer.types.includes("Files")) return;
    depth += 1;
    overlay.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  document.addEventListener("dragover", (e) => {
    if (signedIn()) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    if (signedIn()) {
      show("convert");
      addFiles(e.dataTransfer.files);
    }
  });
}

function start() {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("key-input").value.trim();
    if (value) signIn(value);
  });
  $("forget").addEventListener("click", forget);
  $("show-convert").addEventListener("click", () => show("convert"));
  $("show-history").addEventListener("click", () => show("history"));
  $("file-input").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
  $("convert-all").addEventListener("click", convertAll);
  $("merge").addEventListener("click", mergeSelected);
  $("files").addEventListener("change", (e) => {
    if (e.target.classList.contains("merge-pick")) updateBatch();
  });
  $("download-all").addEventListener("click", downloadAll);
  $("clear-done").addEventListener("click", () => {
    for (const entry of [...entries]) if (entry.sent && !entry.fromHistory) hooks.forget(entry);
  });
  setUpDrop();
  const saved = key.get();
  if (saved) {
    signIn(saved, true).then((ok) => {
      if (!ok) $("key-input").value = "";
    });
  } else {
    $("signin").hidden = false;
  }
  document.body.dataset.ready = "true";
}

start();
