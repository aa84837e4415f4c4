// The admin job list: refresh status, progress and message of the shown jobs every few seconds
// while any of them is queued or running. The models panel: download a registered model (a
// model_pull job, followed over its server-sent events).

import { ADMIN_API } from "./admin_api.js";
import { followJob, getJSON, postJSON, request } from "./api.js";

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

function followPull(item, job) {
  const button = item.querySelector(".model-pull");
  const bar = item.querySelector("progress");
  const message = item.querySelector(".model-pull-message");
  button.disabled = true;
  bar.hidden = false;
  return followJob(job.id, (state) => {
    bar.value = state.progress;
    message.textContent = state.error || state.message || state.status;
  }).then((done) => {
    if (done.status === "succeeded") {
      const badge = document.createElement("span");
      badge.className = "badge succeeded";
      badge.textContent = "ready";
      button.replaceWith(badge);
      bar.hidden = true;
      message.textContent = "verified and installed";
    } else {
      button.disabled = false;
      message.textContent = `download ${done.status}: ${done.error || "try again (it resumes)"}`;
    }
  });
}

for (const button of document.querySelectorAll(".model-pull")) {
  button.addEventListener("click", async () => {
    const item = button.closest("li");
    button.disabled = true;
    try {
      const job = await postJSON(`${ADMIN_API}/models/${encodeURIComponent(button.dataset.model)}/pull`);
      await followPull(item, job);
    } catch (error) {
      button.disabled = false;
      item.querySelector(".model-pull-message").textContent = `The download could not start: ${error.message}`;
    }
  });
}

async function resumeFollowing() {
  try {
    const models = (await getJSON(`${ADMIN_API}/models`)).items;
    for (const model of models) {
      const item = document.querySelector(`#model-list li[data-model="${CSS.escape(model.name)}"]`);
      if (model.pull_job && item && item.querySelector(".model-pull")) followPull(item, model.pull_job);
    }
  } catch {
    // the buttons still work
  }
}

if (document.querySelector(".model-pull")) resumeFollowing();
