// Selecting points on a 2-D map: the box brush's ids, and a free-hand lasso drawn over a Vega chart.
// The geometry is pure (unit-tested with vitest); `mountLasso` is the pointer handling over the chart.

const CLICK_PX = 4;        // a press that moves less than this is a click (neighbours), not a lasso
const STEP_PX = 3;         // lasso vertices closer than this to the previous one are skipped
const MIN_AREA_PX = 16;    // a lasso enclosing less than this (in square pixels) selects nothing

/** Ids of the points inside a brush {x: [a, b], y: [c, d]}. Pure. */
export function pointsInBrush(points, brush) {
  if (!brush || !brush.x || !brush.y) return [];
  const [x0, x1] = [Math.min(...brush.x), Math.max(...brush.x)];
  const [y0, y1] = [Math.min(...brush.y), Math.max(...brush.y)];
  return points.filter((p) => p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1).map((p) => p.id);
}

/** Signed area of a polygon [[x, y], ...] (shoelace formula; the closing edge is implied). Pure. */
export function polygonArea(polygon) {
  let twice = 0;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    twice += (polygon[j][0] + polygon[i][0]) * (polygon[j][1] - polygon[i][1]);
  }
  return twice / 2;
}

/** Whether (x, y) lies inside the polygon, by even-odd ray casting (so self-crossing lassos behave). Pure. */
export function pointInPolygon(x, y, polygon) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Ids of the points {id, x, y} inside a lasso polygon (data coordinates); a path of fewer than three vertices or
 * no area selects nothing. Pure. */
export function pointsInPolygon(points, polygon) {
  if (!polygon || polygon.length < 3 || polygonArea(polygon) === 0) return [];
  const xs = polygon.map((p) => p[0]), ys = polygon.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  return points.filter((p) => p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1 && pointInPolygon(p.x, p.y, polygon))
    .map((p) => p.id);
}

/** Pixels on the chart's SVG ([px, py] from its top-left corner) to data coordinates: minus the view's origin
 * (padding, title), then through the inverted x and y scales. Pure. */
export function pixelToData([px, py], origin, invertX, invertY) {
  return [invertX(px - origin[0]), invertY(py - origin[1])];
}

/** Append `point` to a lasso path unless it is within `step` pixels of the last vertex. Pure: a new array. */
export function extendPath(path, point, step = STEP_PX) {
  const last = path[path.length - 1];
  if (last && Math.hypot(point[0] - last[0], point[1] - last[1]) < step) return path;
  return [...path, point];
}

/** The SVG path data of a lasso (closed once it is done). Pure. */
export function lassoPathData(path, closed) {
  if (!path.length) return "";
  return path.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("") + (closed ? "Z" : "");
}

/** The lasso over the map: in lasso mode a press-and-drag on the chart draws a free-hand path (Vega never sees the
 * press, so its box brush does not start); a press that hardly moves stays a click for Vega (a point's neighbours).
 * `onLasso(pixelPath)` gets the vertices in pixels from the chart SVG's top-left corner. */
export function mountLasso(box, getSvg, onLasso) {
  const NS = "http://www.w3.org/2000/svg";
  const overlay = document.createElementNS(NS, "svg");
  overlay.setAttribute("class", "nbml-lasso");
  const shape = document.createElementNS(NS, "path");
  overlay.append(shape);
  box.append(overlay);
  let enabled = true, drag = null;

  const local = (e) => {     // client coordinates to the overlay's and to the chart SVG's pixels
    const b = box.getBoundingClientRect(), s = getSvg().getBoundingClientRect();
    return { overlay: [e.clientX - b.left, e.clientY - b.top], chart: [e.clientX - s.left, e.clientY - s.top] };
  };
  const draw = (closed) => shape.setAttribute("d", lassoPathData(drag ? drag.overlay : [], closed));

  box.addEventListener("pointerdown", (e) => {
    const svg = getSvg();
    if (!enabled || e.button !== 0 || !svg || !svg.contains(e.target)) return;
    e.stopPropagation();          // the box brush (Vega-Lite listens for pointerdown on the chart) stays put
    const at = local(e);
    drag = { id: e.pointerId, start: [e.clientX, e.clientY], overlay: [at.overlay], chart: [at.chart], moved: false };
    draw(false);
  }, true);
  for (const type of ["mousedown", "touchstart"]) {
    box.addEventListener(type, (e) => { if (enabled && drag) e.stopPropagation(); }, true);
  }
  box.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    if (!drag.moved && Math.hypot(e.clientX - drag.start[0], e.clientY - drag.start[1]) >= CLICK_PX) {
      drag.moved = true;
      box.setPointerCapture?.(e.pointerId);    // keep the moves that leave the chart; only now, so clicks stay clicks
    }
    if (!drag.moved) return;
    e.stopPropagation();
    const at = local(e);
    const before = drag.chart.length;
    drag.chart = extendPath(drag.chart, at.chart);
    if (drag.chart.length > before) drag.overlay = [...drag.overlay, at.overlay];
    draw(false);
  }, true);
  const finish = (e, cancelled) => {
    if (!drag || e.pointerId !== drag.id) return;
    const done = drag;
    if (box.hasPointerCapture?.(e.pointerId)) box.releasePointerCapture(e.pointerId);
    if (!done.moved || cancelled) {
      drag = null;
      draw(false);
      return;
    }
    e.stopPropagation();
    drag = null;
    const path = extendPath(done.chart, local(e).chart);
    shape.setAttribute("d", lassoPathData(done.overlay, true));    // the closed lasso stays drawn until the next
    onLasso(Math.abs(polygonArea(path)) >= MIN_AREA_PX ? path : []);
  };
  box.addEventListener("pointerup", (e) => finish(e, false), true);
  box.addEventListener("pointercancel", (e) => finish(e, true), true);

  return {
    setEnabled(on) {
      enabled = on;
      box.style.touchAction = on ? "none" : "";
      drag = null;
      draw(false);
    },
  };
}
