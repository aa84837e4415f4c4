// The synthesis playground of the volume page: click in the viewer to put a tumor there, see a
// preview of a crop around the tumors in place (POST /api/v1/syntheses/preview), then apply
// (POST /api/v1/syntheses with the same centres: a job that writes the whole volume).

import { API, ApiError, csrfToken, getJSON, postJSON } from "./api.js";
import { el, organValues } from "./ui.js";

const $ = (id) => document.getElementById(id);
const PREVIEW_DELAY_MS = 150; // sliders: one preview once the hand rests

/**
 * @param {import("./viewer_panel.js").ViewerPanel} panel - shows the volume
 * @param {object} volume - the volume JSON (with its label_maps)
 */
export async function startPlayground(panel, volume) {
  const root = $("playground");
  if (!root) return;
  const viewer = panel.viewer;
  const state = { tumors: [], placing: false, timer: null, sent: 0, added: null, ok: false };
  const options = await getJSON(`${API}/synthesis-options`);
  const inputs = {
    mask: $("pg-mask"), organ: $("pg-organ"), type: $("pg-type"), profile: $("pg-profile"),
    seed: $("pg-seed"), diameter: $("pg-diameter"), drop: $("pg-drop"), texture: $("pg-texture"),
    rim: $("pg-rim"), mass: $("pg-mass"),
  };
  // Messages go below the form and onto the image itself, where the person is clicking.
  const note = el("div", { class: "canvas-note", role: "status", hidden: true });
  viewer.canvas.parentElement.append(note);
  const say = (text) => {
    $("pg-status").textContent = text;
    note.textContent = text;
    note.hidden = !text;
  };

  inputs.organ.replaceChildren(...Object.keys(options.organs).map((o) => el("option", { value: o }, o)));
  inputs.mask.replaceChildren(...volume.label_maps.map((m) => el("option", { value: m.id }, `#${m.id} ${m.name}`)));
  const mask = () => volume.label_maps.find((m) => String(m.id) === inputs.mask.value);
  const maskValues = () => {
    const chosen = mask();
    const values = organValues(chosen?.labels, inputs.organ.value);
    if (!chosen?.labels) {
      $("pg-mask-help").textContent = `This mask has no legend: 1 is taken as the ${inputs.organ.value}.`;
      return [1];
    }
    $("pg-mask-help").textContent = values.length
      ? `The ${inputs.organ.value} is label ${values.join(" and ")} of this mask.`
      : `This mask's legend names no ${inputs.organ.value}: choose another mask or organ.`;
    return values;
  };
  const fillTypes = () => {
    const types = options.organs[inputs.organ.value];
    inputs.type.replaceChildren(...types.map((t) => el("option", { value: t }, t)));
    inputs.type.value = types.includes("small") ? "small" : types[0];
  };
  const preferMask = () => {
    const fitting = volume.label_maps.find((m) => organValues(m.labels, inputs.organ.value).length);
    if (fitting) inputs.mask.value = String(fitting.id);
  };

  function body() {
    return {
      image_id: volume.id, mask_id: Number(inputs.mask.value), mask_labels: maskValues(),
      organ: inputs.organ.value, tumor_type: inputs.type.value, profile: inputs.profile.value,
      seed: Number(inputs.seed.value) || 0, centers: state.tumors,
      radius_mm: Number(inputs.diameter.value) / 2, drop_hu: Number(inputs.drop.value),
      texture_mm: Number(inputs.texture.value),
      ...(realistic() ? { rim: Number(inputs.rim.value), mass_effect: Number(inputs.mass.value) } : {}),
    };
  }
  const realistic = () => inputs.profile.value === "realistic";

  function renderList() {
    $("pg-tumors").replaceChildren(...state.tumors.map((point, index) => {
      const remove = el("button", { type: "button", class: "secondary small" }, "remove");
      remove.addEventListener("click", () => {
        state.tumors.splice(index, 1);
        changed();
      });
      return el("li", { dataset: { voxel: point.join(",") } }, `tumor at voxel (${point.join(", ")}) `, remove);
    }));
    $("pg-apply").disabled = !state.tumors.length || !state.ok;
    root.dataset.tumors = String(state.tumors.length);
  }

  async function preview() {
    const sent = ++state.sent;
    const added = state.added;
    state.added = null;
    state.ok = false;
    renderList();
    if (!state.tumors.length) {
      viewer.clearPreview();
      root.dataset.preview = "none";
      say("");
      return;
    }
    const started = performance.now();
    say("Previewing…");
    const response = await fetch(`${API}/syntheses/preview`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body()),
    });
    if (sent !== state.sent) return; // a newer preview is on its way
    if (!response.ok) {
      const detail = (await response.json().catch(() => ({}))).detail || response.statusText;
      if (added && state.tumors.at(-1) === added) {
        // The point just placed is refused: it goes, and the others are previewed again.
        state.tumors.pop();
        renderList();
        say(`Not placed: ${detail}`);
        root.dataset.preview = "refused";
        if (state.tumors.length) setTimeout(() => preview().then(() => say(`Not placed: ${detail}`)), 0);
        else viewer.clearPreview();
        return;
      }
      say(`No preview: ${detail}`);
      root.dataset.preview = "refused";
      return;
    }
    await viewer.showPreview(await response.arrayBuffer());
    if (sent !== state.sent) return;
    const seconds = (performance.now() - started) / 1000;
    state.ok = true;
    renderList();
    say(`Preview of ${state.tumors.length} tumor(s) in ${seconds.toFixed(2)} s.`);
    root.dataset.preview = String(sent);
  }

  function changed() {
    renderList();
    clearTimeout(state.timer);
    state.timer = setTimeout(() => preview().catch((error) => say(`No preview: ${error.message}`)), PREVIEW_DELAY_MS);
  }

  const addAtCrosshair = () => {
    const point = viewer.crosshairVoxel();
    if (!point) return;
    state.tumors.push(point);
    state.added = point;
    changed();
  };
  // A click that moves the crosshair places a tumor there (while placing); from the keyboard,
  // the slice sliders move the crosshair and the button adds the tumor.
  viewer.canvas.addEventListener("click", () => {
    if (state.placing && viewer.tool === "crosshair") setTimeout(addAtCrosshair, 0);
  });
  $("pg-add").addEventListener("click", addAtCrosshair);
  $("pg-place").addEventListener("click", () => {
    state.placing = !state.placing;
    $("pg-place").setAttribute("aria-pressed", String(state.placing));
    $("pg-place").textContent = state.placing ? "Placing: click in the viewer" : "Place tumors";
    if (state.placing) panel.root.scrollIntoView({ block: "start" });
  });
  $("pg-apply").addEventListener("click", async () => {
    $("pg-apply").disabled = true;
    try {
      const made = await postJSON(`${API}/syntheses`, body());
      window.location.assign(`/syntheses/${made.id}`);
    } catch (error) {
      say(`Not applied: ${error instanceof ApiError ? error.message : error}`);
      $("pg-apply").disabled = false;
    }
  });
  const sliders = [
    [inputs.diameter, "pg-diameter-value", " mm"], [inputs.drop, "pg-drop-value", " HU"],
    [inputs.texture, "pg-texture-value", " mm"], [inputs.rim, "pg-rim-value", ""], [inputs.mass, "pg-mass-value", ""],
  ];
  for (const [input, output, unit] of sliders) {
    input.addEventListener("input", () => {
      $(output).textContent = `${input.value}${unit}`;
      changed();
    });
  }
  inputs.profile.addEventListener("change", () => {
    inputs.rim.disabled = inputs.mass.disabled = !realistic();
  });
  for (const input of [inputs.mask, inputs.type, inputs.profile, inputs.seed]) input.addEventListener("change", changed);
  inputs.organ.addEventListener("change", () => {
    fillTypes();
    preferMask();
    changed();
  });
  fillTypes();
  preferMask();
  maskValues();
  renderList();
}
