// Small canvas charts for the admin pages: line charts of training curves (points arrive live)
// and a bar chart of detection sensitivity per lesion size. No library: axes, ticks, lines,
// bars and a legend drawn on a <canvas>, sharp on high-DPI screens.

const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const AXIS = "#5c6773";
const GRID = "#e3e7ec";
const PAD = { left: 56, right: 16, top: 28, bottom: 40 };

/** "Nice" tick values covering [min, max] (about `count` of them). */
export function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  return ticks;
}

function formatTick(value) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 10000 || size < 0.001) return value.toExponential(1);
  return String(Number(value.toPrecision(4)));
}

function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || Number(canvas.getAttribute("width")) || 600;
  const height = canvas.clientHeight || Number(canvas.getAttribute("height")) || 260;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  context.font = FONT;
  return { context, width, height };
}

function drawMessage(context, width, height, text) {
  context.fillStyle = AXIS;
  context.textAlign = "center";
  context.textBaseline = "middle";
  context.fillText(text, width / 2, height / 2);
}

function drawLegend(context, series, width) {
  let x = width - PAD.right;
  context.textBaseline = "middle";
  context.textAlign = "right";
  for (const line of [...series].reverse()) {
    const label = `${line.name} (${line.points.length})`;
    context.fillStyle = AXIS;
    context.fillText(label, x, 12);
    x -= context.measureText(label).width + 6;
    context.fillStyle = line.color;
    context.fillRect(x - 14, 10, 14, 4);
    x -= 26;
  }
}

/** A line chart whose series grow as points arrive. */
export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{title?: string, xLabel?: string, yMin?: number, yMax?: number, series: {name: string, color: string}[]}} options
   */
  constructor(canvas, options) {
    this.canvas = canvas;
    this.options = options;
    this.series = options.series.map((s) => ({ ...s, points: [] }));
    this.draw();
  }

  /** Add points [[x, y], …] to the series called `name` (non-finite y are skipped). */
  add(name, points) {
    const line = this.series.find((s) => s.name === name);
    for (const [x, y] of points) {
      if (Number.isFinite(x) && Number.isFinite(y)) line.points.push([x, y]);
    }
  }

  pointCount() {
    return this.series.reduce((sum, s) => sum + s.points.length, 0);
  }

  bounds() {
    const all = this.series.flatMap((s) => s.points);
    if (!all.length) return null;
    let [xMin, xMax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let yMin = this.options.yMin ?? Math.min(...all.map((p) => p[1]));
    let yMax = this.options.yMax ?? Math.max(...all.map((p) => p[1]));
    if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
    if (yMin === yMax) [yMin, yMax] = [yMin - 0.5, yMax + 0.5];
    return { xMin, xMax, yMin, yMax };
  }

  draw() {
    const { context, width, height } = prepare(this.canvas);
    this.canvas.dataset.points = String(this.pointCount());
    const box = this.bounds();
    if (!box) {
      drawMessage(context, width, height, "waiting for the first points…");
      return;
    }
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    const xTicks = niceTicks(box.xMin, box.xMax, 6);
    const yTicks = niceTicks(box.yMin, box.yMax, 5);
    const xMin = Math.min(box.xMin, xTicks[0] ?? box.xMin);
    const xMax = Math.max(box.xMax, xTicks.at(-1) ?? box.xMax);
    const yMin = Math.min(box.yMin, yTicks[0] ?? box.yMin);
    const yMax = Math.max(box.yMax, yTicks.at(-1) ?? box.yMax);
    const sx = (x) => PAD.left + ((x - xMin) / (xMax - xMin)) * plotW;
    const sy = (y) => PAD.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;
    context.strokeStyle = GRID;
    context.fillStyle = AXIS;
    context.lineWidth = 1;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (const tick of yTicks) {
      context.beginPath();
      context.moveTo(PAD.left, sy(tick));
      context.lineTo(width - PAD.right, sy(tick));
      context.stroke();
      context.fillText(formatTick(tick), PAD.left - 6, sy(tick));
    }
    context.textAlign = "center";
    context.textBaseline = "top";
    for (const tick of xTicks) context.fillText(formatTick(tick), sx(tick), PAD.top + plotH + 6);
    if (this.options.xLabel) context.fillText(this.options.xLabel, PAD.left + plotW / 2, height - 16);
    context.strokeStyle = AXIS;
    context.strokeRect(PAD.left, PAD.top, plotW, plotH);
    for (const line of this.series) {
      if (!line.points.length) continue;
      context.strokeStyle = line.color;
      context.fillStyle = line.color;
      context.lineWidth = 1.6;
      context.beginPath();
      line.points.forEach(([x, y], index) => (index ? context.lineTo(sx(x), sy(y)) : context.moveTo(sx(x), sy(y))));
      context.stroke();
      if (line.points.length < 60) {
        for (const [x, y] of line.points) context.fillRect(sx(x) - 2, sy(y) - 2, 4, 4);
      }
    }
    context.textAlign = "left";
    context.textBaseline = "middle";
    context.fillStyle = "#1d232b";
    if (this.options.title) context.fillText(this.options.title, PAD.left, 12);
    drawLegend(context, this.series, width);
  }
}

/**
 * A bar chart with values in [0, 1] (sensitivity per size bin); null values are drawn as "n/a".
 * @param {HTMLCanvasElement} canvas
 * @param {{labels: string[], values: (number|null)[], notes?: string[], title?: string}} data
 */
export function drawBarChart(canvas, data) {
  const { context, width, height } = prepare(canvas);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, data.labels.length);
  context.strokeStyle = GRID;
  context.fillStyle = AXIS;
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    const y = PAD.top + plotH - tick * plotH;
    context.beginPath();
    context.moveTo(PAD.left, y);
    context.lineTo(width - PAD.right, y);
    context.stroke();
    context.fillText(`${Math.round(tick * 100)}%`, PAD.left - 6, y);
  }
  data.labels.forEach((label, index) => {
    const value = data.values[index];
    const x = PAD.left + index * slot + slot * 0.2;
    context.textAlign = "center";
    context.textBaseline = "top";
    context.fillStyle = AXIS;
    context.fillText(label, x + slot * 0.3, PAD.top + plotH + 6);
    context.textBaseline = "bottom";
    if (value === null || value === undefined || !Number.isFinite(value)) {
      context.fillText("n/a", x + slot * 0.3, PAD.top + plotH - 4);
      return;
    }
    const barH = value * plotH;
    context.fillStyle = "#1f6feb";
    context.fillRect(x, PAD.top + plotH - barH, slot * 0.6, barH);
    context.fillStyle = "#1d232b";
    const note = data.notes ? ` (${data.notes[index]})` : "";
    context.fillText(`${Math.round(value * 100)}%${note}`, x + slot * 0.3, PAD.top + plotH - barH - 3);
  });
  context.strokeStyle = AXIS;
  context.strokeRect(PAD.left, PAD.top, plotW, plotH);
  if (data.title) {
    context.textAlign = "left";
    context.textBaseline = "middle";
    context.fillStyle = "#1d232b";
    context.fillText(data.title, PAD.left, 12);
  }
  canvas.dataset.bars = String(data.values.filter((v) => Number.isFinite(v)).length);
}
