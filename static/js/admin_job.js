// The live page of a training or evaluation job: status, progress with ETA, curves that grow
// as server-sent events bring new points, devices, log tail; Stop and Re-run; an evaluation's
// results (per-case table, detection sensitivity per lesion size) once it has finished.

import { ADMIN_API, formatDuration } from "./admin_api.js";
import { request } from "./api.js";
import { pageData } from "./ui.js";
import { LineChart, drawBarChart } from "./admin_chart.js";

const initial = pageData();
const jobId = initial.id;
const isTraining = initial.kind === "train";
const $ = (id) => document.getElementById(id);

const organ = (initial.params && initial.params.syn_organ) || "liver";
const charts = isTraining
  ? {
      loss: new LineChart($("loss-chart"), {
        title: "Training loss",
        xLabel: "step",
        series: [{ name: "loss", color: "#1f6feb" }],
      }),
      dice: new LineChart($("dice-chart"), {
        title: "Validation Dice",
        xLabel: "step",
        yMin: 0,
        yMax: 1,
        series: [
          { name: `${organ} Dice`, color: "#067647" },
          { name: "tumor Dice", color: "#b42318" },
        ],
      }),
    }
  : null;

function addPoints(points) {
  if (!charts) return;
  const train = points.filter((p) => p.event === "train");
  const validation = points.filter((p) => p.event === "validation");
  charts.loss.add("loss", train.map((p) => [p.step, p.loss]));
  charts.dice.add(`${organ} Dice`, validation.map((p) => [p.step, p.liver_dice]));
  charts.dice.add("tumor Dice", validation.map((p) => [p.step, p.tumor_dice]));
  charts.loss.draw();
  charts.dice.draw();
}

function describeDevice(device) {
  if (device.memory_total_mib === null || device.memory_total_mib === undefined) return device.name;
  const used = (device.memory_used_mib / 1024).toFixed(1);
  const total = (device.memory_total_mib / 1024).toFixed(1);
  return `GPU ${device.index}: ${device.name} — ${used} / ${total} GiB in use`;
}

function applyState(job) {
  const status = $("job-status");
  status.textContent = job.status;
  status.className = `badge ${job.status}`;
  document.body.dataset.jobStatus = job.status;
  $("job-progress").value = job.progress;
  $("job-percent").textContent = `${Math.round(job.progress * 100)}%`;
  $("job-eta").textContent = job.eta_seconds !== null && job.eta_seconds !== undefined ? `about ${formatDuration(job.eta_seconds)} left` : "";
  $("job-message").textContent = job.message || "";
  $("job-error").textContent = job.error && job.status !== "cancelled" ? job.error : "";
  $("stop-button").disabled = job.finished;
  if (job.run) {
    const devices = $("device-list");
    devices.replaceChildren(
      ...(job.run.device_info.length ? job.run.device_info : [{ name: "not assigned yet" }]).map((device) => {
        const item = document.createElement("li");
        item.textContent = describeDevice(device);
        return item;
      }),
    );
    $("job-pid").textContent = job.run.pid ? `process ${job.run.pid} on ${job.run.host}` : "no process yet";
    if (job.run.command) $("job-command").textContent = job.run.command;
  }
  if (job.log_tail !== undefined) {
    const log = $("job-log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = job.log_tail || "(nothing yet)";
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  if (job.status === "succeeded" && job.result) showResult(job);
}

function showResult(job) {
  const box = $("job-result");
  if (box.dataset.shown) return;
  box.dataset.shown = "yes";
  box.hidden = false;
  if (isTraining) {
    $("result-model").textContent = job.result.model;
    $("result-evaluate").href = `/admin/evaluate?model=${encodeURIComponent(job.result.model)}`;
    $("result-card").textContent = job.result.model_card || "";
    return;
  }
  loadEvaluation();
}

function cell(text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

const score = (value) => (value === null || value === undefined ? "—" : value.toFixed(3));

async function loadEvaluation() {
  const results = await request("GET", `${ADMIN_API}/jobs/${jobId}/evaluation`);
  const detection = results.detection || {};
  drawBarChart($("sensitivity-chart"), {
    title: "Detection sensitivity per lesion radius",
    labels: results.size_bins,
    values: detection.sensitivity_per_bin || [],
    notes: (detection.total_per_bin || []).map((total, i) => `${detection.detected_per_bin[i]}/${total}`),
  });
  const means = results.means || {};
  $("eval-means").replaceChildren(
    ...Object.entries(means).map(([name, summary]) => {
      const row = document.createElement("tr");
      row.append(cell(name), cell(score(summary.mean), true), cell(score(summary.mean_excluding_empty), true), cell(String(summary.empty_cases), true));
      return row;
    }),
  );
  $("eval-cases").replaceChildren(
    ...results.cases.map((c) => {
      const row = document.createElement("tr");
      row.append(cell(c.name), cell(score(c.liver_dice), true), cell(score(c.liver_nsd), true), cell(score(c.tumor_dice), true), cell(score(c.tumor_nsd), true));
      return row;
    }),
  );
  const facts = [
    `${results.case_count} case(s)`,
    `lesions detected ${detection.lesions_detected}/${detection.lesions_total}`,
    `false positives per scan ${score(detection.false_positives_per_scan)}`,
    `patient specificity ${score(detection.patient_specificity)}`,
  ];
  const selection = results.checkpoint_selection || {};
  if (selection.warning) facts.push(`warning: ${selection.warning}`);
  if (!results.selection_known) facts.push("the cases that selected this checkpoint are unknown (not trained here)");
  $("eval-facts").textContent = facts.join(" · ");
  document.body.dataset.evaluationShown = "yes";
}

function follow() {
  const source = new EventSource(`${ADMIN_API}/jobs/${jobId}/events`);
  source.addEventListener("points", (event) => addPoints(JSON.parse(event.data).points));
  source.addEventListener("state", (event) => applyState(JSON.parse(event.data)));
  source.addEventListener("end", (event) => {
    source.close();
    applyState(JSON.parse(event.data));
  });
}

$("stop-button").addEventListener("click", async () => {
  $("stop-button").disabled = true;
  try {
    applyState(await request("POST", `${ADMIN_API}/jobs/${jobId}/stop`));
  } catch (error) {
    $("job-error").textContent = error.message;
  }
});

$("rerun-button").addEventListener("click", async () => {
  try {
    const job = await request("POST", `${ADMIN_API}/jobs/${jobId}/rerun`);
    window.location.href = `/admin/jobs/${job.id}`;
  } catch (error) {
    $("job-error").textContent = error.message;
  }
});

window.addEventListener("resize", () => charts && (charts.loss.draw(), charts.dice.draw()));
applyState(initial);
follow();
