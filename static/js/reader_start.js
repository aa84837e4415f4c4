// The reader's start page: example cases in small NiiVue viewers; Enter starts the test.

import { Niivue } from "/vendor/niivue/index.js";

const LIVER_WINDOW = [15, 165];

async function showExample(canvas) {
  const nv = new Niivue({
    backColor: [0.05, 0.07, 0.09, 1],
    isOrientCube: false,
    dragAndDropEnabled: false,
    loadingText: "",
    viewModeHotKey: "None",
    clipPlaneHotKey: "None",
    cycleClipPlaneHotKey: "None",
    crosshairWidth: 0.4,
    crosshairGap: 12,
    crosshairColor: [1, 0.45, 0.2, 0.8],
    multiplanarLayout: 3, // a row: axial, coronal, sagittal side by side
  });
  await nv.attachToCanvas(canvas);
  await nv.loadVolumes([{ url: canvas.dataset.url, colormap: "gray" }]);
  [nv.volumes[0].cal_min, nv.volumes[0].cal_max] = LIVER_WINDOW;
  nv.updateGLVolume();
  nv.opts.multiplanarShowRender = 0;
  nv.setSliceType(3);
}

const start = document.getElementById("start");
const loading = [...document.querySelectorAll("canvas[data-url]")].map((canvas) =>
  showExample(canvas).catch((error) => {
    canvas.replaceWith(Object.assign(document.createElement("p"), {
      className: "error", textContent: `Example could not be shown: ${error.message}`,
    }));
  }));
start?.focus();
// The viewers may take the focus while they load: give it back to the start button.
Promise.all(loading).then(() => {
  if (start && (document.activeElement === document.body || document.activeElement?.tagName === "CANVAS")) {
    start.focus();
  }
});
// Enter starts the test from anywhere on the page except a form field or another control.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !start || event.target.closest?.("input, textarea, select, button, a")) return;
  event.preventDefault();
  window.location.assign(start.href);
});
