// Small DOM helpers shared by the pages: elements, formatting, job progress, result tables.

/** The JSON the server embedded in the page (<script type="application/json" id="page-data">). */
export function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : {};
}

/** Create an element: el("a", {href: "/x", class: "button"}, "text", child, …). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return Number(value).toFixed(digits);
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** Show an error (or clear it with an empty message) in a role=alert element. */
export function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

/** 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st, … */
export function ordinal(number) {
  const tens = number % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[number % 10] || "th";
  return `${number}${suffix}`;
}

/** An estimate of seconds left, for people: "about 40 s left", "about 3 min left". */
export function timeLeft(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 10) return "a few seconds left";
  if (seconds < 90) return `about ${Math.round(seconds / 5) * 5} s left`;
  if (seconds < 2 * 3600) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}

/**
 * A job's place in the queue and time left (JobOut's queue_position and eta_seconds) in words:
 * "queued — 2nd in line · about 1 min left", "about 40 s left", or "" when they say nothing.
 */
export function describeTiming(job) {
  const parts = [];
  if (job.status === "queued" && job.queue_position) {
    parts.push(job.queue_position === 1 ? "queued — next in line" : `queued — ${ordinal(job.queue_position)} in line`);
  }
  if ((job.status === "queued" || job.status === "running") && job.eta_seconds !== null && job.eta_seconds !== undefined) {
    parts.push(timeLeft(job.eta_seconds));
  }
  return parts.join(" · ");
}

/**
 * A job's state in a progress block: <div class="job-progress"> with a <progress>, a status
 * badge, the job's message and (in .job-eta) its queue position and time left.
 */
export function showJob(block, job) {
  block.hidden = false;
  const bar = block.querySelector("progress");
  const badge = block.querySelector(".badge");
  const message = block.querySelector(".job-message");
  bar.value = job.status === "succeeded" ? 1 : job.progress;
  bar.textContent = `${Math.round(job.progress * 100)} %`;
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  const percent = `${Math.round((job.status === "succeeded" ? 1 : job.progress) * 100)} %`;
  // A queued job's message is "queued", which the badge and the queue position already say.
  const note = job.status === "queued" && job.message === "queued" ? "" : job.message;
  const text = job.error ? `${percent} · ${job.error}` : `${percent}${note ? ` · ${note}` : ""}`;
  message.textContent = text;
  const timing = block.querySelector(".job-eta");
  if (timing) {
    timing.textContent = describeTiming(job);
    timing.hidden = !timing.textContent;
  }
  block.dataset.status = job.status;
}

/** A list of download links: [[label, url], …] (entries without a URL are left out). */
export function renderDownloads(list, entries) {
  list.replaceChildren(
    ...entries
      .filter(([, url]) => url)
      .map(([label, url]) => el("li", {}, el("a", { href: url, download: "", class: "button secondary" }, label))),
  );
}

/**
 * The lesion table of a segmentation, or the "no tumor found" line.
 * @param {HTMLElement} container
 * @param {Array<object>} lesions - rows of the API (index, volume_ml, …)
 * @param {(mm: number[]) => void} [onShow] - called with a lesion's centroid when "Show" is used
 */
export function renderLesions(container, lesions, onShow) {
  if (!lesions || !lesions.length) {
    container.replaceChildren(el("p", { class: "no-tumor", role: "status" }, "No tumor found."));
    return;
  }
  const head = el(
    "tr",
    {},
    el("th", { scope: "col", class: "num" }, "#"),
    el("th", { scope: "col", class: "num" }, "Volume (ml)"),
    el("th", { scope: "col", class: "num" }, "Longest axial diameter (mm)"),
    el("th", { scope: "col" }, "Centroid (mm, RAS)"),
    el("th", { scope: "col", class: "num" }, "Mean HU"),
    onShow ? el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")) : null,
  );
  const rows = lesions.map((lesion) => {
    const centroid = (lesion.centroid_mm || []).map((v) => formatNumber(v, 1)).join(", ");
    let action = null;
    if (onShow) {
      const button = el("button", { type: "button", class: "secondary small" }, `Show lesion ${lesion.index}`);
      button.addEventListener("click", () => onShow(lesion.centroid_mm));
      action = el("td", {}, button);
    }
    return el(
      "tr",
      {},
      el("td", { class: "num" }, lesion.index),
      el("td", { class: "num" }, formatNumber(lesion.volume_ml, 2)),
      el("td", { class: "num" }, formatNumber(lesion.longest_axial_diameter_mm, 1)),
      el("td", {}, `(${centroid})`),
      el("td", { class: "num" }, formatNumber(lesion.mean_hu, 0)),
      action,
    );
  });
  const table = el(
    "table",
    { class: "lesions" },
    el("caption", {}, `${lesions.length} lesion${lesions.length === 1 ? "" : "s"}`),
    el("thead", {}, head),
    el("tbody", {}, rows),
  );
  container.replaceChildren(table);
}

/** The downloads of a segmentation (API JSON). */
export function segmentationDownloads(segmentation) {
  const d = segmentation.downloads || {};
  return [
    ["Mask (NIfTI)", d.label],
    ["Lesions (JSON)", d.lesions_json],
    ["Lesions (CSV)", d.lesions_csv],
    ["DICOM-SEG", d.dicom_seg],
  ];
}

/** The legend values whose name matches the organ (kidney: every kidney label). */
export function organValues(labels, organ) {
  if (!labels) return [];
  return Object.entries(labels)
    .filter(([, name]) => {
      const lower = String(name).toLowerCase();
      return lower === organ || lower.startsWith(`${organ}_`) || lower.startsWith(`${organ} `);
    })
    .map(([value]) => Number(value))
    .sort((a, b) => a - b);
}
