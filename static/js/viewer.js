// A CT viewer on NiiVue: one canvas, a CT in HU, an optional label-map overlay with a legend,
// window/level presets, layouts (a 2×2 of three planes + 3-D, single planes, 3-D render; a
// double click maximises the tile under the pointer), slice positions per plane, the HU under
// the mouse pointer, and two tools: a length measurement and a rectangular ROI with HU
// statistics.

import { DRAG_MODE, MULTIPLANAR_TYPE, Niivue, NVImage, SHOW_RENDER } from "/vendor/niivue/index.js";

/** CT windows (width/level in HU). Liver: W150/L90, a narrow window for portal-venous liver. */
export const WINDOW_PRESETS = {
  abdomen: { label: "Abdomen", width: 400, level: 40 },
  liver: { label: "Liver", width: 150, level: 90 },
  bone: { label: "Bone", width: 1800, level: 400 },
};

export const LAYOUTS = {
  multiplanar: "2×2: three planes + 3-D",
  axial: "Axial",
  coronal: "Coronal",
  sagittal: "Sagittal",
  render: "3-D",
};

// Colours by structure name (legend names of our label maps), then a palette by value.
const NAMED_COLORS = {
  liver: [214, 96, 77],
  tumor: [255, 221, 0],
  spleen: [153, 102, 204],
  kidney: [46, 184, 114],
  kidney_right: [46, 184, 114],
  kidney_left: [0, 158, 178],
  pancreas: [255, 150, 50],
  aorta: [220, 30, 60],
  ivc: [60, 110, 230],
};
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
];

/** Legend entries [{value, name, rgb}] for label values, named by the volume's `labels`. */
export function legendFor(labels, values) {
  const names = labels || {};
  const all = new Set(values || []);
  Object.keys(names).forEach((key) => all.add(Number(key)));
  all.delete(0);
  return [...all]
    .filter((value) => Number.isFinite(value))
    .sort((a, b) => a - b)
    .map((value) => {
      const name = names[String(value)] || `label ${value}`;
      const rgb = NAMED_COLORS[name] || PALETTE[(value - 1) % PALETTE.length];
      return { value, name, rgb };
    });
}

function labelColormap(legend) {
  const maxValue = Math.max(1, ...legend.map((entry) => entry.value));
  const cmap = { R: [], G: [], B: [], A: [], I: [], labels: [] };
  const byValue = new Map(legend.map((entry) => [entry.value, entry]));
  for (let value = 0; value <= maxValue; value++) {
    const entry = byValue.get(value);
    const rgb = entry ? entry.rgb : [0, 0, 0];
    cmap.R.push(rgb[0]);
    cmap.G.push(rgb[1]);
    cmap.B.push(rgb[2]);
    cmap.A.push(entry ? 255 : 0);
    cmap.I.push(value);
    cmap.labels.push(entry ? entry.name : "");
  }
  return cmap;
}

/** The distinct non-zero values of a label image (label maps are small integers). */
function distinctValues(img) {
  const seen = new Set();
  for (let i = 0; i < img.length; i++) {
    const value = img[i];
    if (value !== 0) seen.add(Math.round(value));
    if (seen.size > 255) break;
  }
  return [...seen];
}

/** RAS axes of the slice planes: sagittal slices along x, coronal along y, axial along z. */
export const PLANE_AXES = { sagittal: 0, coronal: 1, axial: 2 };
const PLANE_OF_SLICE_TYPE = ["axial", "coronal", "sagittal"]; // NiiVue's axCorSag 0, 1, 2
const TOOL_DRAG_MODES = {
  crosshair: DRAG_MODE.crosshair,
  measure: DRAG_MODE.measurement,
  roi: DRAG_MODE.roiSelection,
  paint: DRAG_MODE.crosshair, // NiiVue paints instead while its drawing is enabled
};

export class CtViewer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{
   *   onHover?: (info: {hu: number, mm: number[], label: string|null}|null) => void,
   *   onSlices?: (slices: Array<{index: number, count: number}>) => void,
   *   onLayout?: (name: string) => void,
   *   onMeasure?: (result: object) => void,
   *   niivue?: object,
   * }} options - ``niivue``: NiiVue options over the defaults (e.g. the reader's colours)
   */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.onHover = options.onHover || (() => {});
    this.onSlices = options.onSlices || (() => {});
    this.onLayout = options.onLayout || (() => {});
    this.onMeasure = options.onMeasure || (() => {});
    this.tool = "crosshair";
    this.nv = new Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.1, 0.75, 1, 0.8],
      crosshairWidth: 0.3,
      isRadiologicalConvention: true, // CT: the patient's right on the screen's left
      show3Dcrosshair: true,
      isColorbar: false,
      isResizeCanvas: true,
      dragAndDropEnabled: false,
      multiplanarShowRender: SHOW_RENDER.ALWAYS,
      multiplanarLayout: MULTIPLANAR_TYPE.GRID,
      isOrientationTextVisible: true,
      logLevel: "error",
      loadingText: "loading",
      measureTextColor: [1, 1, 0.6, 1], // a light label on the dark images
      measureLineColor: [1, 0.85, 0.2, 1],
      ...(options.niivue || {}),
    });
    this.image = null;
    this.overlay = null;
    this.legend = [];
    this.window = { ...WINDOW_PRESETS.abdomen };
    this.layout = "multiplanar";
    this.overlayOpacity = 0.5;
    this.linked = [];
    this.following = false;
    this.ready = this.nv.attachToCanvas(canvas);
    canvas.addEventListener("mousemove", (event) => this.hover(event));
    canvas.addEventListener("mouseleave", () => this.onHover(null));
    canvas.addEventListener("dblclick", (event) => this.toggleMaximise(event));
    // NiiVue focuses the canvas on every move of a drag; focus() scrolls a canvas that is not
    // wholly on screen, which would move the page under a stroke or a measurement. Focus it
    // first, without scrolling: NiiVue's later calls then change nothing.
    canvas.addEventListener("pointerdown", () => canvas.focus({ preventScroll: true }), { capture: true });
    this.nv.onLocationChange = (location) => this.reportLocation(location);
    this.nv.onDragRelease = (drag) => this.dragReleased(drag);
  }

  /** Load a CT (volume JSON of the API) as the background image. */
  async loadImage(volume) {
    await this.ready;
    await this.nv.loadVolumes([
      { url: volume.download_url, name: `volume-${volume.id}.nii.gz`, colormap: "gray" },
    ]);
    this.image = volume;
    this.overlay = null;
    this.setWindow(this.window.width, this.window.level);
    this.setLayout(this.layout);
    this.canvas.dataset.loaded = String(volume.id);
  }

  /**
   * Load a CT from a URL, or from its bytes already fetched (``buffer``: e.g. prefetched while
   * the previous case was read), keeping this viewer's window and layout.
   */
  async loadImageFrom({ url, buffer = null, name = "image.nii" }) {
    await this.ready;
    if (buffer) {
      // Niivue.loadVolumes would fetch again: build the image from the bytes and swap it in.
      const image = await NVImage.loadFromUrl({ url: name, name, buffer, colormap: "gray" });
      this.nv.volumes = [];
      this.nv.addVolume(image);
    } else {
      await this.nv.loadVolumes([{ url, name, colormap: "gray" }]);
    }
    this.overlay = null;
    this.preview = null;
    this.setWindow(this.window.width, this.window.level);
    this.setLayout(this.layout);
  }

  /** Move the crosshair (hence every plane) to image voxel ``voxel`` (i, j, k). */
  centerOnVoxel(voxel) {
    if (!this.nv.volumes.length) return;
    this.nv.scene.crosshairPos = this.nv.vox2frac(voxel, 0);
    this.nv.drawScene();
    this.nv.createOnLocationChange();
  }

  /** Window width and level in HU (NiiVue's cal_min/cal_max = level ∓ width/2). */
  setWindow(width, level) {
    this.window = { width: Math.max(1, Number(width)), level: Number(level) };
    const back = this.nv.volumes[0];
    if (!back) return;
    back.cal_min = this.window.level - this.window.width / 2;
    back.cal_max = this.window.level + this.window.width / 2;
    this.nv.updateGLVolume();
  }

  setLayout(name) {
    const types = {
      multiplanar: this.nv.sliceTypeMultiplanar,
      axial: this.nv.sliceTypeAxial,
      coronal: this.nv.sliceTypeCoronal,
      sagittal: this.nv.sliceTypeSagittal,
      render: this.nv.sliceTypeRender,
    };
    if (!(name in types)) throw new Error(`unknown layout ${name}`);
    this.layout = name;
    this.nv.setSliceType(types[name]);
    this.onLayout(name);
  }

  /**
   * In the 2×2 layout, show the tile under the pointer alone (the last clicked one without an
   * event, e.g. from a key); in a single tile, go back to the 2×2 layout.
   */
  toggleMaximise(event = null) {
    if (this.layout !== "multiplanar") {
      this.setLayout("multiplanar");
      return;
    }
    let tile = this.nv.uiData.clickedTile ?? -1;
    let render = false;
    if (event) {
      const rect = this.canvas.getBoundingClientRect();
      const dpr = this.nv.uiData.dpr || 1;
      const x = (event.clientX - rect.left) * dpr;
      const y = (event.clientY - rect.top) * dpr;
      tile = this.nv.tileIndex(x, y);
      render = tile < 0 && this.nv.inRenderTile(x, y) >= 0;
    }
    const plane = tile >= 0 ? PLANE_OF_SLICE_TYPE[this.nv.screenSlices[tile]?.axCorSag] : null;
    this.setLayout(render ? "render" : plane || "axial");
  }

  /** Slice number (1-based) and count per RAS axis (sagittal, coronal, axial), or null. */
  slices() {
    const dims = this.nv.volumes[0]?.dimsRAS;
    if (!dims) return null;
    return [0, 1, 2].map((axis) => {
      const count = dims[axis + 1];
      const index = Math.floor(this.nv.scene.crosshairPos[axis] * count) + 1;
      return { count, index: Math.min(count, Math.max(1, index)) };
    });
  }

  /** Show slice ``number`` (1-based) of RAS axis ``axis`` (0 sagittal, 1 coronal, 2 axial). */
  setSlice(axis, number) {
    const dims = this.nv.volumes[0]?.dimsRAS;
    if (!dims) return;
    const count = dims[axis + 1];
    const position = [...this.nv.scene.crosshairPos];
    position[axis] = (Math.min(count, Math.max(1, Number(number))) - 0.5) / count;
    this.nv.scene.crosshairPos = position;
    this.nv.drawScene();
    this.nv.createOnLocationChange();
  }

  /**
   * The left mouse button's tool: "crosshair", "measure" (a length), "roi" (HU statistics) or
   * "paint" (the editable mask; call startEditing first).
   */
  setTool(name) {
    if (!(name in TOOL_DRAG_MODES)) throw new Error(`unknown tool ${name}`);
    this.tool = name;
    this.nv.opts.dragModePrimary = TOOL_DRAG_MODES[name];
    this.nv.setDrawingEnabled(name === "paint");
  }

  // --- mask editing: NiiVue's drawing layer, on the background's grid ---------------------------

  /** Open the shown overlay (or an empty mask) as the editable drawing; the overlay hides. */
  async startEditing() {
    if (this.editing) return this.editing;
    const source = this.overlay ? this.overlay.volume : null;
    if (source) {
      if (!(await this.nv.loadDrawingFromUrl(source.download_url))) {
        throw new Error("the label map could not be opened for editing");
      }
      this.nv.setOpacity(this.nv.volumes.indexOf(this.overlay.nvimage), 0);
    } else {
      this.nv.createEmptyDrawing();
    }
    this.nv.setDrawOpacity(0.6);
    this.editing = { source };
    return this.editing;
  }

  /** Close the drawing without saving; the overlay shows again. */
  stopEditing() {
    if (!this.editing) return;
    this.nv.closeDrawing();
    this.editing = null;
    if (this.overlay) this.setOverlayOpacity(this.overlayOpacity);
  }

  /** Brush: label ``value`` (0 erases) and its size in voxels. */
  setPen(value, size) {
    this.nv.setPenValue(Number(value), false);
    this.nv.opts.penSize = Math.max(1, Number(size));
  }

  undoStroke() {
    if (this.editing) this.nv.drawUndo();
  }

  /** Voxels per label value of the drawing: {value: count}. */
  drawingCounts() {
    const bitmap = this.nv.drawBitmap;
    const counts = {};
    if (!bitmap) return counts;
    for (let index = 0; index < bitmap.length; index++) {
      const value = bitmap[index];
      if (value) counts[value] = (counts[value] || 0) + 1;
    }
    return counts;
  }

  /** The drawing as NIfTI bytes on the image's own grid (NiiVue undoes its RAS reordering). */
  async drawingNifti() {
    const bytes = await this.nv.saveImage({ filename: "", isSaveDrawing: true, volumeByIndex: 0 });
    if (!(bytes instanceof Uint8Array)) throw new Error("there is no drawing to save");
    return bytes;
  }

  dragReleased(drag) {
    if (this.tool === "crosshair" || drag.tileIdx < 0 || !this.nv.volumes.length) return;
    const voxStart = Array.from(drag.voxStart, Math.round);
    const voxEnd = Array.from(drag.voxEnd, Math.round);
    const plane = PLANE_OF_SLICE_TYPE[drag.axCorSag] || null;
    if (this.tool === "measure") {
      this.onMeasure({ kind: "length", plane, lengthMm: drag.mmLength, voxStart, voxEnd });
    } else {
      this.onMeasure({ kind: "roi", plane, voxStart, voxEnd, ...this.regionStats(voxStart, voxEnd) });
    }
  }

  /**
   * HU mean, SD, min, max and area (mm², in the plane) of the ellipse that NiiVue draws inside
   * the box between two corners (voxels whose centres lie in it).
   */
  regionStats(corner1, corner2) {
    const back = this.nv.volumes[0];
    const { dims, pixDims } = back.hdr;
    const slope = back.hdr.scl_slope || 1;
    const inter = back.hdr.scl_inter || 0;
    const low = corner1.map((v, axis) => Math.max(0, Math.min(v, corner2[axis])));
    const high = corner1.map((v, axis) => Math.min(dims[axis + 1] - 1, Math.max(v, corner2[axis])));
    let count = 0;
    let sum = 0;
    let sumSquares = 0;
    let min = Infinity;
    let max = -Infinity;
    const centre = low.map((v, axis) => (v + high[axis]) / 2);
    const radius = low.map((v, axis) => (high[axis] - v + 1) / 2);
    const inside = (point) => point.reduce((sum, v, axis) => sum + ((v - centre[axis]) / radius[axis]) ** 2, 0) <= 1 + 1e-9;
    for (let k = low[2]; k <= high[2]; k++) {
      for (let j = low[1]; j <= high[1]; j++) {
        for (let i = low[0]; i <= high[0]; i++) {
          // Across the plane the box is one voxel thick: its term is 0 there.
          if (!inside([i, j, k].map((v, axis) => (high[axis] === low[axis] ? centre[axis] : v)))) continue;
          const hu = back.img[i + dims[1] * (j + dims[2] * k)] * slope + inter;
          count += 1;
          sum += hu;
          sumSquares += hu * hu;
          min = Math.min(min, hu);
          max = Math.max(max, hu);
        }
      }
    }
    const mean = sum / count;
    const sd = Math.sqrt(Math.max(0, sumSquares / count - mean * mean));
    // The box is one voxel thick across the plane: a voxel's area is the other two sizes.
    const across = [0, 1, 2].find((axis) => high[axis] === low[axis]) ?? 2;
    const voxelArea = [0, 1, 2].reduce((product, axis) => (axis === across ? product : product * pixDims[axis + 1]), 1);
    const areaMm2 = count * voxelArea;
    return { count, mean, sd, min, max, areaMm2 };
  }

  /**
   * Show a label map (volume JSON of the API) over the image, or none (null).
   * @returns {Promise<Array<{value:number,name:string,rgb:number[]}>>} the legend shown
   */
  async setOverlay(labelVolume) {
    await this.ready;
    if (this.overlay) {
      this.nv.removeVolume(this.overlay.nvimage);
      this.overlay = null;
      this.legend = [];
    }
    if (!labelVolume) {
      this.nv.drawScene();
      return [];
    }
    const nvimage = await NVImage.loadFromUrl({
      url: labelVolume.download_url,
      name: `label-${labelVolume.id}.nii.gz`,
      opacity: this.overlayOpacity,
    });
    const legend = legendFor(labelVolume.labels, distinctValues(nvimage.img));
    nvimage.setColormapLabel(labelColormap(legend));
    this.nv.addVolume(nvimage);
    this.nv.setOpacity(this.nv.volumes.indexOf(nvimage), this.overlayOpacity);
    this.overlay = { volume: labelVolume, nvimage };
    this.legend = legend;
    this.nv.updateGLVolume();
    this.canvas.dataset.overlay = String(labelVolume.id);
    return legend;
  }

  setOverlayOpacity(opacity) {
    this.overlayOpacity = Number(opacity);
    if (!this.overlay) return;
    this.nv.setOpacity(this.nv.volumes.indexOf(this.overlay.nvimage), this.overlayOpacity);
  }

  /**
   * Centre every plane on a lesion: the overlay voxel of ``value`` nearest to its centroid (a
   * centroid can lie outside a curved lesion), or the centroid itself without an overlay.
   */
  centerOnLesion(centroidMm, value = 2) {
    if (!this.overlay) return this.centerOnMM(centroidMm);
    const over = this.overlay.nvimage;
    const { dims } = over.hdr;
    const centre = Array.from(over.mm2vox(centroidMm), Math.round);
    const at = (i, j, k) => Math.round(over.img[i + dims[1] * (j + dims[2] * k)]);
    let best = null;
    let bestDistance = Infinity;
    for (let radius = 0; radius <= 40 && best === null; radius++) {
      for (let k = centre[2] - radius; k <= centre[2] + radius; k++) {
        for (let j = centre[1] - radius; j <= centre[1] + radius; j++) {
          for (let i = centre[0] - radius; i <= centre[0] + radius; i++) {
            if (i < 0 || j < 0 || k < 0 || i >= dims[1] || j >= dims[2] || k >= dims[3]) continue;
            if (at(i, j, k) !== value) continue;
            const distance = (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2;
            if (distance < bestDistance) [best, bestDistance] = [[i, j, k], distance];
          }
        }
      }
    }
    if (!best) return this.centerOnMM(centroidMm);
    this.nv.scene.crosshairPos = this.nv.vox2frac(best, this.nv.volumes.indexOf(over));
    this.nv.drawScene();
    this.nv.createOnLocationChange();
    return best;
  }

  /** The image voxel (i, j, k) under the crosshair, or null. */
  crosshairVoxel() {
    if (!this.nv.volumes.length) return null;
    return Array.from(this.nv.frac2vox(this.nv.scene.crosshairPos, 0), Math.round);
  }

  /**
   * Show a NIfTI crop (bytes on the image's grid, e.g. a synthesis preview) in place: its
   * voxels replace the image's there (the originals are kept and put back by clearPreview).
   * Written into the image itself rather than laid over it, so no edge of the crop shows.
   */
  async showPreview(buffer) {
    const crop = await NVImage.loadFromUrl({ url: "preview.nii", name: "preview.nii", buffer });
    this.clearPreview();
    const back = this.nv.volumes[0];
    const { dims } = back.hdr;
    const start = voxelOffset(back.hdr.affine, crop.hdr.affine);
    const [nx, ny, nz] = crop.hdr.dims.slice(1, 4);
    const slope = back.hdr.scl_slope || 1;
    const inter = back.hdr.scl_inter || 0;
    const cropSlope = crop.hdr.scl_slope || 1;
    const cropInter = crop.hdr.scl_inter || 0;
    const saved = [];
    for (let k = 0; k < nz; k++) {
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const [x, y, z] = [start[0] + i, start[1] + j, start[2] + k];
          if (x < 0 || y < 0 || z < 0 || x >= dims[1] || y >= dims[2] || z >= dims[3]) continue;
          const index = x + dims[1] * (y + dims[2] * z);
          const hu = crop.img[i + nx * (j + ny * k)] * cropSlope + cropInter;
          saved.push([index, back.img[index]]);
          back.img[index] = (hu - inter) / slope;
        }
      }
    }
    this.preview = saved;
    this.nv.updateGLVolume();
  }

  clearPreview() {
    if (!this.preview) return;
    const back = this.nv.volumes[0];
    for (const [index, value] of this.preview) back.img[index] = value;
    this.preview = null;
    this.nv.updateGLVolume();
  }

  /** Move the crosshair to a world position in mm (e.g. a lesion centroid). */
  centerOnMM(mm) {
    if (!this.nv.volumes.length) return;
    this.nv.scene.crosshairPos = this.nv.mm2frac(mm);
    this.nv.drawScene();
    this.nv.createOnLocationChange();
  }

  /** Move the crosshair to the centre of the overlay's voxels of `value` (false if none). */
  centerOnLabel(value) {
    if (!this.overlay) return false;
    const { img, hdr } = this.overlay.nvimage;
    const nx = hdr.dims[1];
    const ny = hdr.dims[2];
    let count = 0;
    const sum = [0, 0, 0];
    for (let index = 0; index < img.length; index++) {
      if (img[index] !== value) continue;
      count += 1;
      sum[0] += index % nx;
      sum[1] += Math.floor(index / nx) % ny;
      sum[2] += Math.floor(index / (nx * ny));
    }
    if (!count) return false;
    const vox = sum.map((total) => total / count);
    const affine = hdr.affine;
    const mm = [0, 1, 2].map(
      (row) => affine[row][0] * vox[0] + affine[row][1] * vox[1] + affine[row][2] * vox[2] + affine[row][3],
    );
    this.centerOnMM(mm);
    return true;
  }

  /**
   * Keep this viewer's crosshair (hence its slices) in step with another viewer, both ways.
   * (NiiVue's own broadcastTo only syncs while a canvas has the focus, so programmatic moves
   * such as centerOnMM would not follow.)
   */
  link(other) {
    this.linked.push(other);
    other.linked.push(this);
    other.followMM(this.crosshairMM());
  }

  crosshairMM() {
    return this.nv.volumes.length ? [...this.nv.frac2mm(this.nv.scene.crosshairPos)].slice(0, 3) : null;
  }

  followMM(mm) {
    if (!mm || !this.nv.volumes.length || this.following) return;
    this.following = true;
    try {
      this.nv.scene.crosshairPos = this.nv.mm2frac(mm);
      this.nv.drawScene();
      const info = this.valuesAt(mm);
      if (info) this.onHover(info);
      this.onSlices(this.slices());
    } finally {
      this.following = false;
    }
  }

  valuesAt(mm) {
    const back = this.nv.volumes[0];
    const vox = back.mm2vox(mm);
    const dims = back.dimsRAS;
    if (vox.some((v, axis) => v < 0 || v >= dims[axis + 1])) return null;
    const hu = back.getValue(vox[0], vox[1], vox[2]);
    let label = null;
    if (this.overlay) {
      const over = this.overlay.nvimage;
      const ov = over.mm2vox(mm);
      const value = Math.round(over.getValue(ov[0], ov[1], ov[2]));
      const entry = this.legend.find((item) => item.value === value);
      label = entry ? entry.name : null;
    }
    return { hu, mm: [...mm].slice(0, 3), label };
  }

  hover(event) {
    if (!this.nv.volumes.length || this.layout === "render") return;
    const rect = this.canvas.getBoundingClientRect();
    const dpr = this.nv.uiData.dpr || 1;
    const frac = this.nv.canvasPos2frac([(event.clientX - rect.left) * dpr, (event.clientY - rect.top) * dpr]);
    if (frac[0] < 0) {
      this.onHover(null);
      return;
    }
    this.onHover(this.valuesAt(this.nv.frac2mm(frac)));
  }

  reportLocation(location) {
    if (!location || !location.mm || !this.nv.volumes.length) return;
    this.onSlices(this.slices());
    if (!this.following) this.linked.forEach((other) => other.followMM(location.mm));
    const info = this.valuesAt(location.mm);
    if (info) this.onHover(info);
  }
}

function det3(m) {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
    - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
    + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

/**
 * Index offset of grid ``cropAffine``'s voxel 0 in grid ``affine`` (same axes and spacing):
 * the solution of A · offset = origin difference, by Cramer's rule.
 */
function voxelOffset(affine, cropAffine) {
  const origin = [0, 1, 2].map((row) => cropAffine[row][3] - affine[row][3]);
  const m = [0, 1, 2].map((row) => affine[row].slice(0, 3));
  const det = det3(m);
  return [0, 1, 2].map((col) =>
    Math.round(det3(m.map((row, r) => row.map((value, c) => (c === col ? origin[r] : value)))) / det));
}

/** "−35 HU · liver · (12.5, −40.0, 88.0) mm" for a hover readout. */
export function describeHover(info) {
  if (!info) return "";
  const hu = `${Math.round(info.hu)} HU`;
  const where = `(${info.mm.map((v) => v.toFixed(1)).join(", ")}) mm`;
  return info.label ? `${hu} · ${info.label} · ${where}` : `${hu} · ${where}`;
}
