// The admin job list: refresh status, progress and message of the shown jobs every few seconds
// while any of them is queued or running.

import { ADMIN_API } from "./admin-api.js";
import { request } from "./api.js";

const REFRESH_MS = 3000;

function update(row, job) {
  const [, , statusCell, progressCell, messageCell] = row.children;
  const badge = statusCell.querySelector(".badge");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  progressCell.querySelector("progress").value = job.progress;
  messageCell.textContent = job.error || job.message || "";
}

async function refresh() {
  const rows = [...document.querySelectorAll("#admin-jobs tr[data-job-id]")];
  const open = rows.filter((row) => !["succeeded", "failed", "cancelled"].includes(row.querySelector(".badge").textContent));
  if (!open.length) return;
  try {
    const page = await request("GET", `${ADMIN_API}/jobs?limit=100`);
    const byId = new Map(page.items.map((job) => [String(job.id), job]));
    for (const row of rows) {
      const job = byId.get(row.dataset.jobId);
      if (job) update(row, job);
    }
  } catch {
    // a hiccup: try again at the next tick
  }
  setTimeout(refresh, REFRESH_MS);
}

setTimeout(refresh, REFRESH_MS);
