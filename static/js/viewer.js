// A CT viewer on NiiVue: one canvas, a CT in HU, an optional label-map overlay with a legend,
// window/level presets, layouts (multiplanar with 3-D, single planes, 3-D render) and the HU
// under the mouse pointer.

import { Niivue, NVImage, SHOW_RENDER } from "/vendor/niivue/index.js";

/** CT windows (width/level in HU). Liver: W150/L90, a narrow window for portal-venous liver. */
export const WINDOW_PRESETS = {
  abdomen: { label: "Abdomen", width: 400, level: 40 },
  liver: { label: "Liver", width: 150, level: 90 },
  bone: { label: "Bone", width: 1800, level: 400 },
};

export const LAYOUTS = {
  multiplanar: "Multiplanar + 3-D",
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

export class CtViewer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{onHover?: (info: {hu: number, mm: number[], label: string|null}|null) => void}} options
   */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.onHover = options.onHover || (() => {});
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
      isOrientationTextVisible: true,
      logLevel: "error",
      loadingText: "loading",
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
    this.nv.onLocationChange = (location) => this.reportLocation(location);
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
    if (!this.following) this.linked.forEach((other) => other.followMM(location.mm));
    const info = this.valuesAt(location.mm);
    if (info) this.onHover(info);
  }
}

/** "−35 HU · liver · (12.5, −40.0, 88.0) mm" for a hover readout. */
export function describeHover(info) {
  if (!info) return "";
  const hu = `${Math.round(info.hu)} HU`;
  const where = `(${info.mm.map((v) => v.toFixed(1)).join(", ")}) mm`;
  return info.label ? `${hu} · ${info.label} · ${where}` : `${hu} · ${where}`;
}
