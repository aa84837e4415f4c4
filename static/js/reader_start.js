// The reader's start page: example cases in small viewers (the app's CT viewer component, in a
// row of the three planes); Enter starts the test.

import { CtViewer } from "/static/js/viewer.js";

const LIVER_WINDOW = { width: 150, level: 90 };

async function showExample(canvas) {
  const viewer = new CtViewer(canvas, {
    niivue: {
      backColor: [0.05, 0.07, 0.09, 1],
      isOrientCube: false,
      loadingText: "",
      viewModeHotKey: "None",
      clipPlaneHotKey: "None",
      cycleClipPlaneHotKey: "None",
      crosshairWidth: 0.4,
      crosshairGap: 12,
      crosshairColor: [1, 0.45, 0.2, 0.8],
      isOrientationTextVisible: false,
      multiplanarLayout: 3, // a row: axial, coronal, sagittal side by side
      multiplanarShowRender: 0,
    },
  });
  viewer.window = { ...LIVER_WINDOW };
  await viewer.loadImageFrom({ url: canvas.dataset.url, name: "example.nii" });
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
