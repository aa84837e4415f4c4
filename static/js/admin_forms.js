// The training and evaluation forms: show the fields of the chosen data source, the tumor-type
// weights of the chosen organ, and send the form as JSON to the admin API; on success go to the
// new job's live page, else show the server's reason next to the button.

import { ADMIN_API } from "./admin_api.js";
import { request } from "./api.js";
import { pageData } from "./ui.js";

const options = pageData();

function value(form, name) {
  const field = form.elements.namedItem(name);
  return field ? field.value.trim() : "";
}

const integer = (form, name) => (value(form, name) === "" ? null : Number.parseInt(value(form, name), 10));
const number = (form, name) => (value(form, name) === "" ? null : Number(value(form, name)));
const checked = (form, name) => form.elements.namedItem(name).checked;
const triple = (text) => text.split(/[ ,x×]+/).filter(Boolean).map((part) => Number.parseInt(part, 10));

function source(form) {
  return form.querySelector("input[name=source]:checked").value;
}

function showSource(form) {
  const chosen = source(form);
  for (const block of form.querySelectorAll("[data-source]")) block.hidden = block.dataset.source !== chosen;
}

function dropNulls(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== null && v !== ""));
}

// --- training -------------------------------------------------------------------------------

function showTypeWeights(form) {
  const box = document.getElementById("type-weights");
  const weights = options.organs[value(form, "syn_organ")] || {};
  box.replaceChildren(
    ...Object.entries(weights).map(([name, weight]) => {
      const label = document.createElement("label");
      label.textContent = name;
      const input = document.createElement("input");
      Object.assign(input, { type: "number", step: "0.05", min: "0", value: String(weight), name: `type-${name}` });
      input.dataset.tumorType = name;
      label.append(input);
      return label;
    }),
  );
}

function trainingDataset(form) {
  const chosen = source(form);
  if (chosen === "phantoms") {
    return {
      source: chosen,
      phantoms: integer(form, "phantoms"),
      val_phantoms: integer(form, "val_phantoms"),
      phantom_shape: triple(value(form, "phantom_shape")),
      phantom_spacing: number(form, "phantom_spacing"),
    };
  }
  if (chosen === "volumes") {
    const picked = (use) =>
      [...form.querySelectorAll("select[data-label-id]")].filter((s) => s.value === use).map((s) => Number(s.dataset.labelId));
    return { source: chosen, train_labels: picked("train"), val_labels: picked("validation") };
  }
  return dropNulls({ source: chosen, path: value(form, "path"), root: value(form, "root") || null });
}

function trainingBody(form) {
  const types = Object.fromEntries(
    [...form.querySelectorAll("input[data-tumor-type]")].map((input) => [input.dataset.tumorType, Number(input.value)]),
  );
  return dropNulls({
    model_name: value(form, "model_name") || null,
    arch: value(form, "arch"),
    dataset: trainingDataset(form),
    syn: checked(form, "syn"),
    syn_organ: value(form, "syn_organ"),
    syn_profile: value(form, "syn_profile"),
    syn_prob: number(form, "syn_prob"),
    syn_types: types,
    epochs: integer(form, "epochs"),
    max_steps: integer(form, "max_steps"),
    warmup_epochs: integer(form, "warmup_epochs"),
    val_every: integer(form, "val_every"),
    batch_size: integer(form, "batch_size"),
    lr: number(form, "lr"),
    roi_size: integer(form, "roi_size"),
    spacing_mm: number(form, "spacing_mm"),
    seed: integer(form, "seed"),
    gpus: integer(form, "gpus"),
    amp: checked(form, "amp"),
    workers: integer(form, "workers"),
    threads: integer(form, "threads"),
  });
}

// --- evaluation -----------------------------------------------------------------------------

function evaluationBody(form) {
  const chosen = source(form);
  let dataset;
  if (chosen === "phantoms") {
    dataset = {
      source: chosen,
      phantoms: integer(form, "phantoms"),
      phantom_shape: triple(value(form, "phantom_shape")),
      phantom_spacing: number(form, "phantom_spacing"),
    };
  } else if (chosen === "volumes") {
    dataset = { source: chosen, labels: [...form.querySelectorAll("input[name=labels]:checked")].map((box) => Number(box.value)) };
  } else {
    dataset = dropNulls({ source: chosen, path: value(form, "path"), root: value(form, "root") || null, split: value(form, "split") });
  }
  return {
    model: value(form, "model"),
    dataset,
    gpus: integer(form, "gpus"),
    overlap: number(form, "overlap"),
    mode: value(form, "mode"),
  };
}

// --- wiring ---------------------------------------------------------------------------------

function wire(form, path, body) {
  for (const radio of form.querySelectorAll("input[name=source]")) radio.addEventListener("change", () => showSource(form));
  showSource(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("form-error");
    const button = form.querySelector("button[type=submit]");
    error.textContent = "";
    button.disabled = true;
    try {
      const job = await request("POST", path, body(form));
      window.location.href = `/admin/jobs/${job.id}`;
    } catch (failure) {
      error.textContent = failure.message;
      button.disabled = false;
    }
  });
}

const trainForm = document.getElementById("train-form");
if (trainForm) {
  trainForm.elements.namedItem("syn_organ").addEventListener("change", () => showTypeWeights(trainForm));
  showTypeWeights(trainForm);
  wire(trainForm, `${ADMIN_API}/training-jobs`, trainingBody);
}
const evaluateForm = document.getElementById("evaluate-form");
if (evaluateForm) wire(evaluateForm, `${ADMIN_API}/evaluation-jobs`, evaluationBody);
