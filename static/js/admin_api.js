// What the admin pages share beyond the API client (api.js) and the DOM helpers (ui.js).

import { API } from "./api.js";

export const ADMIN_API = `${API}/admin`;

/** Seconds as "1 h 05 min", "3 min 20 s" or "12 s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}
