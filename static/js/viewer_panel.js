// The viewer panel of the pages (templates/volumes/_viewer.html): one or more NiiVue tiles
// sharing one toolbar (layout, left-button tool, CT window, overlay, opacity), slice sliders
// (the first tile's; linked tiles follow), a legend, HU readouts and the measurement readout.

import { API, uploadFile } from "./api.js";
import { el } from "./ui.js";
import { CtViewer, WINDOW_PRESETS, describeHover } from "./viewer.js";

export class ViewerPanel {
  /**
   * @param {HTMLElement} root - the panel's <section class="viewer-panel">
   */
  constructor(root) {
    this.root = root;
    this.tiles = [...root.querySelectorAll(".viewer-tile")];
    this.viewers = this.tiles.map((tile) => {
      const readout = tile.querySelector(".hu-readout");
      return new CtViewer(tile.querySelector("canvas"), {
        onHover: (info) => {
          readout.textContent = info ? describeHover(info) : readout.dataset.idle;
          readout.dataset.hu = info ? String(Math.round(info.hu)) : "";
        },
        onSlices: (slices) => this.showSlices(slices),
        onLayout: (name) => this.showLayout(name),
        onMeasure: (result) => this.showMeasurement(result),
      });
    });
    const target = this.tiles.findIndex((tile) => tile.dataset.overlayTarget !== undefined);
    this.overlayViewer = this.viewers[target >= 0 ? target : 0];
    this.labelMaps = [];
    this.legendList = root.querySelector(".legend");
    this.overlaySelect = root.querySelector("select[name=overlay]");
    this.opacity = root.querySelector("input[name=opacity]");
    this.status = root.querySelector(".viewer-status");
    this.measureReadout = root.querySelector(".measure-readout");
    this.bindLayout();
    this.bindTools();
    this.bindPaint();
    this.bindSlices();
    this.bindWindow();
    this.bindOverlay();
  }

  get viewer() {
    return this.viewers[0];
  }

  say(message) {
    if (this.status) this.status.textContent = message;
  }

  bindLayout() {
    for (const radio of this.root.querySelectorAll("input[name=layout]")) {
      radio.addEventListener("change", () => {
        if (radio.checked) this.viewers.forEach((viewer) => viewer.setLayout(radio.value));
      });
    }
    this.viewers.forEach((viewer) => {
      viewer.canvas.addEventListener("keydown", (event) => {
        if (event.key.toLowerCase() !== "m" || event.ctrlKey || event.metaKey || event.altKey) return;
        event.preventDefault();
        viewer.toggleMaximise();
      });
    });
  }

  /** A layout chosen in a tile (double click, M): every tile and the radios follow. */
  showLayout(name) {
    for (const radio of this.root.querySelectorAll("input[name=layout]")) radio.checked = radio.value === name;
    this.viewers.forEach((viewer) => {
      if (viewer.layout !== name) viewer.setLayout(name);
    });
    this.root.dataset.layout = name;
  }

  bindTools() {
    for (const radio of this.root.querySelectorAll("input[name=tool]")) {
      radio.addEventListener("change", async () => {
        if (!radio.checked) return;
        if (radio.value === "paint") await this.startPainting();
        this.viewers.forEach((viewer) => viewer.setTool(radio.value === "paint" && viewer !== this.overlayViewer ? "crosshair" : radio.value));
        this.root.dataset.tool = radio.value;
      });
    }
  }

  // --- mask editing: paint / erase / undo, saved as a new label map of the image -------------

  bindPaint() {
    this.paintBox = this.root.querySelector("fieldset.paint");
    if (!this.paintBox) return;
    const value = this.paintBox.querySelector("select[name=paint-value]");
    const brush = this.paintBox.querySelector("input[name=brush]");
    const pen = () => {
      this.overlayViewer.setPen(value.value, brush.value);
      this.paintBox.querySelector(".brush-size").textContent = brush.value;
    };
    value.addEventListener("change", pen);
    brush.addEventListener("input", pen);
    this.pen = pen;
    const act = {
      undo: () => this.overlayViewer.undoStroke(),
      save: () => this.savePainting(),
      discard: () => this.stopPainting(),
    };
    for (const button of this.paintBox.querySelectorAll("button[data-paint]")) {
      button.addEventListener("click", async () => {
        await act[button.dataset.paint]();
        this.showCounts();
      });
    }
    const canvas = this.overlayViewer.canvas;
    // NiiVue ends a stroke on the button's release, wherever the pointer is by then.
    document.addEventListener("pointerup", () => setTimeout(() => this.showCounts(), 0));
    canvas.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z" && this.overlayViewer.editing) {
        event.preventDefault();
        this.overlayViewer.undoStroke();
        this.showCounts();
      }
    });
  }

  async startPainting() {
    const viewer = this.overlayViewer;
    const wasEditing = Boolean(viewer.editing);
    const { source } = await viewer.startEditing();
    const select = this.paintBox.querySelector("select[name=paint-value]");
    if (!wasEditing) {
      // The legend shown for the overlay (its named values and every value found in it).
      const shown = viewer.legend.map((entry) => [String(entry.value), entry.name]);
      const entries = shown.length ? shown : [["1", "liver"], ["2", "tumor"]];
      select.replaceChildren(
        ...entries.map(([v, name]) => el("option", { value: v }, `${v} · ${name}`)),
        el("option", { value: "0" }, "0 · erase"),
      );
      select.value = entries.some(([v]) => v === "2") ? "2" : entries[0][0];
      this.editSource = source;
    }
    this.paintBox.hidden = false;
    this.pen();
    this.showCounts();
    this.say(source ? `Editing a copy of ${source.name}.` : "Painting a new mask.");
  }

  stopPainting() {
    this.overlayViewer.stopEditing();
    this.paintBox.hidden = true;
    this.root.querySelector("input[name=tool][value=crosshair]").click();
    this.root.dataset.counts = "";
  }

  showCounts() {
    if (!this.paintBox || !this.overlayViewer.editing) return;
    const counts = this.overlayViewer.drawingCounts();
    const text = Object.entries(counts).map(([v, n]) => `label ${v}: ${n} voxels`).join(" · ");
    this.paintBox.querySelector(".paint-counts").textContent = text || "The mask is empty.";
    this.root.dataset.counts = JSON.stringify(counts);
  }

  async savePainting() {
    const viewer = this.overlayViewer;
    const image = viewer.image;
    const source = this.editSource;
    try {
      const bytes = await viewer.drawingNifti();
      const name = `${(source?.name || image.name).replace(/\.nii(\.gz)?$/, "")} – edited.nii`;
      const query = new URLSearchParams({ name, kind: "label", image_id: String(image.id) });
      if (source) query.set("derived_from", String(source.id));
      else query.set("labels", JSON.stringify(Object.fromEntries(
        [...this.paintBox.querySelectorAll("select[name=paint-value] option")]
          .filter((option) => option.value !== "0")
          .map((option) => [option.value, option.textContent.split(" · ")[1]]),
      )));
      const { body } = await uploadFile(`${API}/volumes?${query}`, new Blob([bytes]), null);
      this.stopPainting();
      this.setLabelMaps([...this.labelMaps.filter((label) => label.id !== body.id), body]);
      await this.showOverlay(body.id);
      this.say(`Saved as label map #${body.id} (${body.name}).`);
      this.root.dataset.saved = String(body.id);
    } catch (error) {
      this.say(`The mask could not be saved: ${error.message}`);
    }
  }

  bindSlices() {
    this.sliders = [...this.root.querySelectorAll(".slice-slider input[type=range]")];
    for (const slider of this.sliders) {
      slider.addEventListener("input", () => this.viewer.setSlice(Number(slider.dataset.axis), Number(slider.value)));
    }
  }

  /** The first tile's slice per plane on the sliders and their numbers. */
  showSlices(slices) {
    if (!slices || !this.sliders) return;
    for (const slider of this.sliders) {
      const { index, count } = slices[Number(slider.dataset.axis)];
      slider.max = String(count);
      slider.value = String(index);
      slider.disabled = false;
      const number = this.root.querySelector(`.slice-number[data-axis="${slider.dataset.axis}"]`);
      number.textContent = `${index} / ${count}`;
    }
  }

  showMeasurement(result) {
    if (!this.measureReadout) return;
    const where = `voxel (${result.voxStart.join(", ")}) → (${result.voxEnd.join(", ")})`;
    const text = result.kind === "length"
      ? `Length ${result.lengthMm.toFixed(1)} mm · ${result.plane} · ${where}`
      : `ROI (ellipse) ${result.plane}: mean ${result.mean.toFixed(1)} HU · SD ${result.sd.toFixed(1)} · min ${Math.round(result.min)} · max ${Math.round(result.max)} · area ${(result.areaMm2 / 100).toFixed(2)} cm² (${result.count} voxels) · ${where}`;
    this.measureReadout.textContent = text;
    this.measureReadout.hidden = false;
    Object.assign(this.measureReadout.dataset, {
      kind: result.kind,
      value: String(result.kind === "length" ? result.lengthMm : result.mean),
      voxStart: result.voxStart.join(","),
      voxEnd: result.voxEnd.join(","),
    });
  }

  /** Centre every plane on a lesion and bring the viewer into view. */
  showLesion(centroidMm) {
    this.overlayViewer.centerOnLesion(centroidMm);
    this.root.scrollIntoView({ block: "start" });
  }

  bindWindow() {
    const width = this.root.querySelector("input[name=window-width]");
    const level = this.root.querySelector("input[name=window-level]");
    const presets = [...this.root.querySelectorAll("button[data-preset]")];
    this.applyWindow = (w, l, presetName = null) => {
      width.value = w;
      level.value = l;
      this.viewers.forEach((viewer) => viewer.setWindow(w, l));
      presets.forEach((button) => button.setAttribute("aria-pressed", String(button.dataset.preset === presetName)));
      this.root.dataset.window = `${w}/${l}`;
      this.windowSet = true;
    };
    presets.forEach((button) => {
      button.addEventListener("click", () => {
        const preset = WINDOW_PRESETS[button.dataset.preset];
        this.applyWindow(preset.width, preset.level, button.dataset.preset);
      });
    });
    const free = () => {
      const w = Number(width.value);
      const l = Number(level.value);
      if (Number.isFinite(w) && w > 0 && Number.isFinite(l)) this.applyWindow(w, l);
    };
    width.addEventListener("change", free);
    level.addEventListener("change", free);
  }

  bindOverlay() {
    if (this.overlaySelect) {
      this.overlaySelect.addEventListener("change", () => {
        const id = this.overlaySelect.value ? Number(this.overlaySelect.value) : null;
        this.showOverlay(id);
      });
    }
    if (this.opacity) {
      this.opacity.addEventListener("input", () => {
        this.overlayViewer.setOverlayOpacity(this.opacity.value);
        this.opacity.setAttribute("aria-valuetext", `${Math.round(this.opacity.value * 100)} %`);
      });
    }
  }

  /** Load a CT into tiles: one volume JSON per tile, in order (null leaves a tile as it is). */
  async loadImages(volumes) {
    this.say("Loading the image…");
    try {
      await Promise.all(volumes.map((volume, i) => (volume ? this.viewers[i].loadImage(volume) : null)));
      if (!this.windowSet) {
        const preset = WINDOW_PRESETS.abdomen;
        this.applyWindow(preset.width, preset.level, "abdomen");
      } else {
        const { width, level } = this.viewers[0].window;
        this.viewers.forEach((viewer) => viewer.setWindow(width, level));
      }
      this.say("");
      this.showSlices(this.viewer.slices());
      this.root.dataset.ready = String(this.viewers.filter((viewer) => viewer.image).length);
    } catch (error) {
      this.say(`The image could not be shown: ${error.message}`);
      throw error;
    }
  }

  /** The label maps offered as overlays (volume JSON); optionally choose one. */
  setLabelMaps(labelMaps) {
    this.labelMaps = labelMaps;
    if (!this.overlaySelect) return;
    const current = this.overlaySelect.value;
    this.overlaySelect.replaceChildren(
      el("option", { value: "" }, "None"),
      ...labelMaps.map((label) => el("option", { value: label.id }, `${label.name} (#${label.id})`)),
    );
    this.overlaySelect.value = labelMaps.some((label) => String(label.id) === current) ? current : "";
  }

  /** Show the label map `id` over the image (null: none), with its legend. */
  async showOverlay(id) {
    const label = this.labelMaps.find((item) => item.id === id) || null;
    if (this.overlaySelect) this.overlaySelect.value = label ? String(label.id) : "";
    this.say(label ? "Loading the label map…" : "");
    try {
      const legend = await this.overlayViewer.setOverlay(label);
      this.renderLegend(legend, label);
      this.say("");
    } catch (error) {
      this.say(`The label map could not be shown: ${error.message}`);
    }
    this.root.dataset.overlay = label ? String(label.id) : "";
  }

  renderLegend(legend, label) {
    if (!this.legendList) return;
    if (!label) {
      this.legendList.replaceChildren(el("li", { class: "muted" }, "No overlay."));
      return;
    }
    if (!label.labels) {
      this.legendList.replaceChildren(
        el("li", { class: "muted" }, "This label map has no legend: values are shown as numbers."),
      );
    } else {
      this.legendList.replaceChildren();
    }
    for (const entry of legend) {
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = `rgb(${entry.rgb.join(",")})`;
      this.legendList.append(el("li", { dataset: { value: entry.value } }, swatch, `${entry.value} · ${entry.name}`));
    }
  }
}
