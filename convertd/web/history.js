// This key's jobs (GET /v2/jobs), newest first: filter by status and tag, page by page, with
// the same live state and actions as the files just sent.

import { ApiError, get } from "./api.js";
import { $, clear } from "./dom.js";
import { Entry } from "./entry.js";

const PER_PAGE = 10;

export class History {
  constructor(hooks, track) {
    this.hooks = hooks;
    this.track = track;
    this.page = 1;
    this.lastPage = 1;
    this.shown = [];
    $("history-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      this.page = 1;
      this.load();
    });
    $("prev-page").addEventListener("click", () => this.go(this.page - 1));
    $("next-page").addEventListener("click", () => this.go(this.page + 1));
  }

  go(page) {
    if (page < 1 || page > this.lastPage) return;
    this.page = page;
    this.load();
  }

  async load() {
    const params = new URLSearchParams({ include: "tasks", per_page: PER_PAGE, page: this.page });
    const status = $("filter-status").value;
    const tag = $("filter-tag").value.trim();
    if (status) params.set("filter[status]", status);
    if (tag) params.set("filter[tag]", tag);
    $("history-error").textContent = "";
    let answer;
    try {
      answer = await get(`/v2/jobs?${params}`);
    } catch (err) {
      $("history-error").textContent = err instanceof ApiError ? err.lines.join(" ") : String(err.message);
      return;
    }
    for (const entry of this.shown) this.hooks.forget(entry);
    const list = clear($("history-list"));
    this.shown = answer.data.map((job) => {
      const entry = Entry.fromJob(job, this.hooks);
      entry.fromHistory = true;
      this.track(entry);
      list.append(entry.node);
      return entry;
    });
    const meta = answer.meta || {};
    this.lastPage = meta.last_page || 1;
    $("page-info").textContent = meta.total
      ? `${meta.from}–${meta.to} of ${meta.total} (page ${meta.current_page} of ${meta.last_page})`
      : "No jobs.";
    $("prev-page").disabled = this.page <= 1;
    $("next-page").disabled = this.page >= this.lastPage;
  }

  // A job made while the history shows the first page: shown on the next load.
  jobChanged(_job) {}
}
