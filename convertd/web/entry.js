// One file and its /v2 job: the choice of format and options before it is sent, then its
// tasks as the event stream tells of them, its results and its actions (cancel, retry,
// delete). The history shows jobs made elsewhere with the same class.

import { ApiError, del, get, post, upload } from "./api.js";
import { clear, el, humanSize, local, nextId } from "./dom.js";
import { optionsForm } from "./formats.js";
import { MERGEABLE, operationsFor } from "./operations.js";

const IMAGES = new Set(["png", "jpg", "webp", "gif", "bmp"]);
const RANK = { waiting: 0, processing: 1, finished: 2, error: 2 };
const ROLES = new Set(["convert", "export", "thumb", "preview"]);
const ROLE_OF_OPERATION = { convert: "convert", merge: "convert", "export/url": "export" };

export class Entry {
  constructor(hooks) {
    this.hooks = hooks; // {register(entry, taskId), forget(entry), changed(entry), catalog}
    this.id = nextId("entry");
    this.tasks = {}; // role -> task
    this.roles = new Map(); // task id -> role
    this.job = null;
    this.localError = null; // an ApiError from a request the page made for this entry
    this.node = el("li", { className: "file", id: this.id });
    this.status = el("p", { className: "status", role: "status" });
    this.progress = el("progress", { max: 100, hidden: true, "aria-label": "Progress" });
    this.error = el("div", { className: "error" });
    this.results = el("div", { className: "results" });
    this.actions = el("div", { className: "actions row wrap" });
  }

  // A file picked or dropped: its choices and options, not yet sent.
  static draft(file, hooks) {
    const entry = new Entry(hooks);
    entry.file = file;
    entry.name = file.name;
    entry.ext = hooks.catalog.extension(file.name);
    entry.choices = hooks.catalog.choicesFor(entry.ext);
    entry.choices.operations = operationsFor(entry.ext);
    entry.filetype = hooks.catalog.filetypesOf(entry.ext)[0] || null;
    entry.renderDraft();
    return entry;
  }

  // A job from GET /v2/jobs?include=tasks.
  static fromJob(job, hooks) {
    const entry = new Entry(hooks);
    entry.job = job;
    for (const task of job.tasks || []) {
      const role = ROLES.has(task.name) || task.name.startsWith("import") ? task.name
        : task.operation.startsWith("import/") ? "import" : ROLE_OF_OPERATION[task.operation];
      if (role && (!entry.tasks[role] || task.retry_of_task_id)) entry.adopt(role, task);
      else entry.roles.set(task.id, role || "other");
    }
    const imp = entry.tasks.import || entry.tasks["import-0"];
    const files = (imp && imp.result && imp.result.files) || [];
    entry.name = files.length ? files[0].filename : (job.tag || job.id);
    const conv = entry.tasks.convert;
    if (conv && conv.operation === "merge") {
      // A merge is its output: "merged.pdf (3 files)", not its first input's name.
      const made = conv.result && conv.result.files && conv.result.files[0];
      const name = (made && made.filename) || (conv.payload && conv.payload.filename) || "merged.pdf";
      const parts = (job.tasks || []).filter((t) => t.operation.startsWith("import/")).length;
      entry.name = `${name} (${parts} files)`;
    }
    entry.renderJob();
    return entry;
  }

  adopt(role, task) {
    // A request's answer may come after the stream told of a later state: keep the later one.
    const known = this.tasks[role];
    if (known && known.id === task.id && RANK[known.status] > RANK[task.status]) return;
    this.tasks[role] = task;
    this.roles.set(task.id, role);
    this.hooks.register(this, task.id);
  }

  renderDraft() {
    const { presets, formats, operations } = this.choices;
    const selectId = nextId("format");
    this.select = el(
      "select",
      { id: selectId, onchange: () => this.renderOptions() },
      presets.length ? el("optgroup", { label: "Presets" },
        presets.map((c) => el("option", { value: c.value, title: c.title }, c.label))) : null,
      el("optgroup", { label: "Formats" },
        formats.map((c) => el("option", { value: c.value, title: c.title }, c.label))),
      operations.length ? el("optgroup", { label: "Operations" },
        operations.map((c) => el("option", { value: c.value, title: c.title }, c.label))) : null,
    );
    const firstFormat = formats.find((c) => c.format !== this.ext) || formats[0];
    if (firstFormat) this.select.value = firstFormat.value;
    this.optionsBox = el("div");
    this.applyAll = el("button", { type: "button", className: "quiet", onclick: () =>
      this.hooks.applyToAll(this) }, "Apply to all of this type");
    const remove = el("button", { type: "button", className: "quiet", onclick: () =>
      this.hooks.forget(this) }, "Remove");
    const mergeId = nextId("merge");
    this.mergeBox = MERGEABLE.has(this.ext) ? el("input", { id: mergeId, type: "checkbox", className: "merge-pick" }) : null;
    this.draftBox = el("div", { className: "draft" },
      this.mergeBox ? el("div", { className: "row" }, this.mergeBox,
        el("label", { for: mergeId }, "Select for merging into one PDF")) : null,
      formats.length
        ? el("div", { className: "row wrap" }, el("label", { for: selectId }, "Convert to"),
          this.select, this.applyAll, remove)
        : el("p", { className: "error" }, `This server has no converter for .${this.ext} files.`, " ", remove),
      this.optionsBox);
    this.node.replaceChildren(this.head(`${this.filetype || "unknown type"} · ${humanSize(this.file.size)}`),
      this.draftBox, this.status, this.progress, this.error, this.results, this.actions);
    if (formats.length) this.renderOptions();
  }

  head(meta) {
    return el("div", { className: "head" }, el("span", { className: "name" }, this.name),
      el("span", { className: "muted" }, meta));
  }

  choice() {
    const all = [...this.choices.presets, ...this.choices.formats, ...this.choices.operations];
    return all.find((c) => c.value === this.select.value);
  }

  renderOptions() {
    const choice = this.choice();
    const schema = choice.op ? choice.op.schema : this.hooks.catalog.schema(choice.filetype);
    this.form = optionsForm(schema, choice.preset ? choice.preset.options : {});
    const details = el("details", {}, el("summary", {}, "Options"), this.form.node);
    clear(this.optionsBox).append(this.form.empty ? "" : details);
  }

  get sent() {
    return this.job !== null;
  }

  // Build the job: import/upload -> convert (or an operation) -> export/url (inline links, for
  // previews), and for a PDF a thumbnail of its first page; then upload through the signed form.
  async submit(tag) {
    if (this.form && !this.form.check()) {
      this.setStatus("invalid");
      this.status.textContent = "invalid: see the options marked below";
      return;
    }
    const choice = this.choice();
    const values = this.form.values();
    let main;
    if (choice.op) {
      main = { operation: choice.operation, input: "import", ...(choice.op.fixed || {}) };
      Object.assign(main, choice.op.shape ? choice.op.shape(values) : values);
      this.format = choice.op.output(this.ext, values);
    } else {
      main = { operation: "convert", input: "import", input_format: this.ext };
      if (choice.preset) main.preset = choice.preset.name;
      else main.output_format = choice.format;
      Object.assign(main, values);
      this.format = choice.format;
    }
    await this.send({ import: { operation: "import/upload" }, convert: main }, [["import", this.file]], tag);
  }

  // Several files merged into one PDF: one job, one import/upload each.
  static merge(drafts, hooks) {
    const entry = new Entry(hooks);
    entry.name = `merged.pdf (${drafts.map((d) => d.name).join(", ")})`;
    entry.node.append(entry.head("merge · " + drafts.length + " files"), entry.status, entry.progress,
      entry.error, entry.results, entry.actions);
    entry.parts = drafts.map((d) => d.file);
    return entry;
  }

  async submitMerge(tag) {
    const tasks = {};
    const uploads = this.parts.map((file, i) => {
      tasks[`import-${i}`] = { operation: "import/upload" };
      return [`import-${i}`, file];
    });
    tasks.convert = { operation: "merge", input: Object.keys(tasks), output_format: "pdf", filename: "merged.pdf" };
    this.format = "pdf";
    await this.send(tasks, uploads, tag);
  }

  async send(tasks, uploads, tag) {
    tasks.export = { operation: "export/url", input: "convert", inline: true };
    if (this.format === "pdf") {
      tasks.thumb = { operation: "thumbnail", input: "convert", output_format: "png", width: 480, height: 480, ignore_error: true };
      tasks.preview = { operation: "export/url", input: "thumb", inline: true, ignore_error: true };
    }
    this.setStatus("sending");
    if (this.draftBox) this.draftBox.inert = true;
    let job;
    try {
      const body = { tasks };
      if (tag) body.tag = tag;
      ({ data: job } = await post("/v2/jobs", body, (left) => {
        this.status.textContent = left ? `rate-limited: retrying in ${left} s` : "sending";
      }));
    } catch (err) {
      this.refused(err);
      return;
    }
    if (this.draftBox) this.draftBox.remove();
    try {
      this.job = job;
      for (const task of job.tasks) this.adopt(task.name, task);
      this.uploading = true;
      this.render();
      for (const [role, file] of uploads) {
        const form = this.tasks[role].result.form;
        await upload(form, file, local(form.url));
      }
      this.uploading = false;
    } catch (err) {
      this.uploading = false;
      this.fail(err);
    }
    this.render();
  }

  // POST /v2/jobs said no (a bad option, a 429, no server): nothing was made, so the file
  // stays a draft, its choices open, the error beside them (on the field the API names).
  refused(err) {
    this.fail(err);
    const lines = this.localError.lines;
    this.localError = null;
    if (this.draftBox) this.draftBox.inert = false;
    this.setStatus("refused");
    clear(this.error).append(...lines.map((line) => el("p", {}, line)));
    const errors = (err instanceof ApiError && err.body.errors) || {};
    for (const [field, messages] of Object.entries(errors)) {
      const input = this.form && this.form.field(field.split(".").pop());
      if (input) this.form.mark(input, [].concat(messages).join(" "));
    }
    if (!this.draftBox) {
      clear(this.actions).append(el("button", { type: "button", className: "quiet", onclick: () =>
        this.hooks.forget(this) }, "Remove"));
    }
    this.hooks.changed(this);
  }

  fail(err) {
    this.localError = err instanceof ApiError ? err : new ApiError(0, { message: String(err.message) });
  }

  onTask(task) {
    const role = this.roles.get(task.id) ||
      (task.retry_of_task_id && this.roles.get(task.retry_of_task_id));
    if (!role) return;
    if (task.event === "task.deleted") return;
    this.adopt(role, task);
    this.render();
  }

  // What a person sees: waiting -> processing (percent) -> finished, failed or cancelled.
  state() {
    if (this.localError) return { name: "failed", lines: this.localError.lines };
    const roles = Object.keys(this.tasks).filter((r) => r.startsWith("import"));
    for (const role of [...roles, "convert", "export"]) {
      const t = this.tasks[role];
      if (t && t.status === "error") {
        if (t.code === "CANCELLED") return { name: "cancelled", lines: [t.message || "Cancelled"] };
        return { name: "failed", lines: [t.message || "Failed", t.code ? `(${t.code})` : ""].filter(Boolean) };
      }
    }
    const exp = this.tasks.export;
    const conv = this.tasks.convert;
    if (exp && exp.status === "finished") {
      const pv = this.tasks.preview;
      const thumb = this.tasks.thumb;
      const previewDone = !pv || pv.status !== "waiting" && pv.status !== "processing" ||
        (thumb && thumb.status === "error");
      if (previewDone) return { name: "finished" };
    }
    if (this.uploading) return { name: "uploading" };
    if (conv && conv.status === "processing") return { name: "processing", percent: conv.percent };
    if (conv && conv.status === "finished") return { name: "processing", percent: 100 };
    return { name: "waiting" };
  }

  setStatus(name, percent) {
    this.node.dataset.state = name;
    if (this.job) this.node.dataset.job = this.job.id;
    if (this.tasks.convert) this.node.dataset.convert = this.tasks.convert.id;
    this.status.textContent = percent ? `${name} ${percent}%` : name;
    this.progress.hidden = name !== "processing";
    if (percent !== undefined) this.progress.value = percent;
    else this.progress.removeAttribute("value");
  }

  render() {
    const st = this.state();
    this.setStatus(st.name, st.percent);
    clear(this.error).append(...(st.lines || []).map((line) => el("p", {}, line)));
    this.renderResults(st.name === "finished");
    this.renderActions(st.name);
    this.hooks.changed(this);
  }

  renderJob() {
    const when = this.job.created_at ? new Date(this.job.created_at).toLocaleString() : "";
    const meta = [when, this.job.tag ? `tag ${this.job.tag}` : ""].filter(Boolean).join(" · ");
    this.node.replaceChildren(this.head(meta), this.status, this.progress, this.error,
      this.results, this.actions);
    this.render();
  }

  files(role) {
    const t = this.tasks[role];
    return (t && t.status === "finished" && t.result && t.result.files) || [];
  }

  renderResults(finished) {
    clear(this.results);
    if (!finished) return;
    for (const f of this.files("export")) {
      const url = local(f.url);
      const ext = f.filename.toLowerCase().split(".").pop();
      if (IMAGES.has(ext)) {
        this.results.append(el("img", { src: url, alt: `Preview of ${f.filename}`, className: "preview" }));
      }
      this.results.append(el("div", { className: "row wrap" },
        el("a", { href: url, download: f.filename, className: "button download" }, `Download ${f.filename}`),
        ext === "pdf" ? el("a", { href: url, target: "_blank", rel: "noopener" }, "Open") : null,
        el("span", { className: "muted" }, humanSize(f.size || 0))));
    }
    for (const f of this.files("preview")) {
      this.results.prepend(el("img", { src: local(f.url), alt: "Preview of the first page", className: "preview" }));
    }
  }

  renderActions(state) {
    clear(this.actions);
    const button = (text, fn, quiet = false) =>
      el("button", { type: "button", className: quiet ? "quiet" : null, onclick: () => this.act(fn) }, text);
    if ((state === "waiting" || state === "processing") && this.tasks.convert) {
      this.actions.append(button("Cancel", () => this.cancel()));
    }
    if ((state === "failed" || state === "cancelled") && this.tasks.convert && !this.localError) {
      this.actions.append(button("Retry", () => this.retry()));
    }
    if (this.job) this.actions.append(button("Delete", () => this.remove(), true));
  }

  async act(fn) {
    try {
      await fn();
    } catch (err) {
      this.fail(err);
      this.render();
      this.localError = null;
    }
  }

  async refresh() {
    const { data: job } = await get(`/v2/jobs/${this.job.id}`);
    for (const task of job.tasks) {
      const role = this.roles.get(task.id);
      if (role && this.tasks[role] && this.tasks[role].id === task.id) this.adopt(role, task);
    }
    this.render();
  }

  cancel() {
    return post(`/v2/tasks/${this.tasks.convert.id}/cancel`);
  }

  // A retry is one task in the same job; what took its output is made again, alone.
  async retry() {
    const { data: task } = await post(`/v2/tasks/${this.tasks.convert.id}/retry`);
    // The tasks that took the failed one's output stay failed: they are made again below.
    for (const role of ["export", "thumb", "preview"]) delete this.tasks[role];
    this.adopt("convert", task);
    this.render();
    const { data: exp } = await post("/v2/export/url", { input: [task.id], inline: true });
    this.adopt("export", exp);
    this.render();
  }

  async remove() {
    for (const [id, role] of this.roles) {
      const t = this.tasks[role];
      if (t && t.id === id && !t.job_id) await del(`/v2/tasks/${id}`).catch(() => null);
    }
    await del(`/v2/jobs/${this.job.id}`);
    this.hooks.forget(this);
  }
}
