// A line plot of (time, value) points as inline SVG: no library, nothing inline to run.
import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 240, LEFT = 56, RIGHT = 12, TOP = 12, BOTTOM = 28;

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function label(value) {
  return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3)
    ? value.toExponential(2) : String(Number(value.toPrecision(6)));
}

// points: [{t: Date or ms, y: number}]; returns a <figure> with the SVG and a caption.
export function linePlot(points, caption) {
  const figure = h("figure", { class: "plot-figure" });
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img",
    "aria-label": `${caption}: ${points.length} points` });
  const data = points.map((p) => ({ t: +p.t, y: p.y })).filter((p) => Number.isFinite(p.y));
  if (data.length) {
    const ts = data.map((p) => p.t), ys = data.map((p) => p.y);
    let [t0, t1, y0, y1] = [Math.min(...ts), Math.max(...ts), Math.min(...ys), Math.max(...ys)];
    if (t1 === t0) t1 = t0 + 1;
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    const x = (t) => LEFT + ((t - t0) / (t1 - t0)) * (W - LEFT - RIGHT);
    const y = (v) => H - BOTTOM - ((v - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
    svg.append(
      s("line", { class: "axis", x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM }),
      s("line", { class: "axis", x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM }),
      s("text", { x: 2, y: TOP + 8 }, label(y1)),
      s("text", { x: 2, y: H - BOTTOM }, label(y0)),
      s("text", { x: LEFT, y: H - 8 }, new Date(t0).toLocaleTimeString()),
      s("text", { x: W - RIGHT, y: H - 8, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()),
      s("polyline", { class: "series", points: data.map((p) => `${x(p.t)},${y(p.y)}`).join(" ") }),
    );
    for (const p of data) {
      const dot = s("circle", { class: "point", cx: x(p.t), cy: y(p.y), r: 3 });
      dot.append(s("title", {}, `${new Date(p.t).toLocaleTimeString()}: ${p.y}`));
      svg.append(dot);
    }
  }
  figure.append(svg, h("figcaption", {}, `${caption} (${data.length} points)`));
  return figure;
}
