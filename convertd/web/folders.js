// Folders at a glance (the drop folders: waiting, skipped and why, recently converted,
// failed; read-only, for admin keys). Its admin endpoint is not in the daemon yet: this is
// where the page will ask it and fill #folders-body; until then the section stays hidden.

export function showFolders(_me) {
  // Intentionally empty for now.
}
