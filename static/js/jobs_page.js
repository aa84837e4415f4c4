// The jobs page: cancel buttons, and rows of unfinished jobs kept up to date by polling.

import { API, getJSON, isFinished, postJSON } from "./api.js";
import { describeTiming, showError } from "./ui.js";

const errorBox = document.getElementById("jobs-error");
const POLL_MS = 1500;

function updateRow(row, job) {
  row.dataset.status = job.status;
  const badge = row.querySelector(".badge");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  const bar = row.querySelector("progress");
  bar.value = job.status === "succeeded" ? 1 : job.progress;
  bar.textContent = `${Math.round(bar.value * 100)} %`;
  row.querySelector(".job-message").textContent = [job.error || job.message, describeTiming(job)].filter(Boolean).join(" · ");
  if (isFinished(job.status)) {
    const button = row.querySelector("button.cancel");
    if (button) button.remove();
  }
}

for (const button of document.querySelectorAll("button.cancel")) {
  button.addEventListener("click", async () => {
    const row = button.closest("tr");
    button.disabled = true;
    showError(errorBox, "");
    try {
      updateRow(row, await postJSON(`${API}/jobs/${button.dataset.job}/cancel`));
    } catch (error) {
      showError(errorBox, `Job ${button.dataset.job} could not be cancelled: ${error.message}`);
      button.disabled = false;
    }
  });
}

async function refresh() {
  const open = [...document.querySelectorAll("tr[data-job]")].filter((row) => !isFinished(row.dataset.status));
  for (const row of open) {
    try {
      updateRow(row, await getJSON(`${API}/jobs/${row.dataset.job}`));
    } catch (error) {
      if (error.status === 404) row.dataset.status = "cancelled";
    }
  }
  if (open.length) setTimeout(refresh, POLL_MS);
}

setTimeout(refresh, POLL_MS);
