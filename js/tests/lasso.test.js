// @vitest-environment jsdom
import { describe, it, expect } from "vitest";
import {
  pointsInBrush, pointInPolygon, pointsInPolygon, polygonArea, pixelToData, extendPath, lassoPathData, mountLasso,
} from "../src/lib/lasso.js";

const grid = [];   // points on a 10 x 10 lattice, ids 0..99: id = 10 * y + x
for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) grid.push({ id: 10 * y + x, x, y });

describe("pointInPolygon (even-odd ray casting)", () => {
  const square = [[0, 0], [4, 0], [4, 4], [0, 4]];
  it("tells inside from outside for a convex polygon", () => {
    expect(pointInPolygon(2, 2, square)).toBe(true);
    expect(pointInPolygon(5, 2, square)).toBe(false);
    expect(pointInPolygon(-0.1, 2, square)).toBe(false);
    expect(pointInPolygon(2, 4.5, square)).toBe(false);
  });

  it("leaves out the notch of a concave polygon", () => {
    // a U: two arms (x 0-2 and 6-8) joined by a base (y 0-2); the notch x 2-6, y 2-8 is outside
    const u = [[0, 0], [8, 0], [8, 8], [6, 8], [6, 2], [2, 2], [2, 8], [0, 8]];
    expect(pointInPolygon(1, 5, u)).toBe(true);     // left arm
    expect(pointInPolygon(7, 5, u)).toBe(true);     // right arm
    expect(pointInPolygon(4, 1, u)).toBe(true);     // base
    expect(pointInPolygon(4, 5, u)).toBe(false);    // notch: between the arms
    expect(pointInPolygon(4, 9, u)).toBe(false);
  });

  it("does not depend on the direction the lasso was drawn", () => {
    const u = [[0, 0], [8, 0], [8, 8], [6, 8], [6, 2], [2, 2], [2, 8], [0, 8]];
    const back = [...u].reverse();
    for (const [x, y] of [[1, 5], [7, 5], [4, 1], [4, 5], [9, 9]]) {
      expect(pointInPolygon(x, y, back)).toBe(pointInPolygon(x, y, u));
    }
  });

  it("treats the loops of a self-crossing path by the even-odd rule", () => {
    const bowtie = [[0, 0], [4, 4], [4, 0], [0, 4]];   // two triangles meeting at (2, 2)
    expect(pointInPolygon(0.5, 2, bowtie)).toBe(true);
    expect(pointInPolygon(3.5, 2, bowtie)).toBe(true);
    expect(pointInPolygon(2, 0.5, bowtie)).toBe(false);
  });
});

describe("pointsInPolygon", () => {
  it("selects the lattice points inside a concave lasso, and only those", () => {
    const u = [[-0.5, -0.5], [8.5, -0.5], [8.5, 8.5], [5.5, 8.5], [5.5, 2.5], [2.5, 2.5], [2.5, 8.5], [-0.5, 8.5]];
    const ids = pointsInPolygon(grid, u);
    const expected = grid.filter((p) => p.x <= 8 && p.y <= 8 && (p.y <= 2 || p.x <= 2 || p.x >= 6)).map((p) => p.id);
    expect(ids.sort((a, b) => a - b)).toEqual(expected);
    expect(ids).not.toContain(44);                       // (4, 4): in the notch
    expect(ids).toContain(47);                            // (7, 4): right arm
  });

  it("selects nothing for degenerate or too-short paths", () => {
    expect(pointsInPolygon(grid, [])).toEqual([]);
    expect(pointsInPolygon(grid, null)).toEqual([]);
    expect(pointsInPolygon(grid, [[1, 1]])).toEqual([]);
    expect(pointsInPolygon(grid, [[0, 0], [9, 9]])).toEqual([]);
    expect(pointsInPolygon(grid, [[0, 0], [4, 4], [9, 9]])).toEqual([]);    // collinear: no area
  });

  it("agrees with the box brush on a rectangle", () => {
    const rect = [[1.5, 2.5], [5.5, 2.5], [5.5, 6.5], [1.5, 6.5]];
    expect(pointsInPolygon(grid, rect).sort((a, b) => a - b))
      .toEqual(pointsInBrush(grid, { x: [5.5, 1.5], y: [2.5, 6.5] }).sort((a, b) => a - b));
  });
});

describe("geometry helpers", () => {
  it("polygonArea is the shoelace area, signed by orientation", () => {
    expect(Math.abs(polygonArea([[0, 0], [4, 0], [4, 3], [0, 3]]))).toBe(12);
    expect(polygonArea([[0, 0], [4, 0], [4, 3]])).toBe(-polygonArea([[4, 3], [4, 0], [0, 0]]));
    expect(polygonArea([[0, 0], [1, 1], [2, 2]])).toBe(0);
  });

  it("pixelToData subtracts the view origin, then inverts the scales (y grows downwards on screen)", () => {
    // x: data 0..10 over 0..200 px; y: data 0..5 over 100..0 px; the plot starts 30 px right of and 20 px below
    // the SVG's corner (padding and title)
    const invertX = (px) => (px / 200) * 10;
    const invertY = (py) => ((100 - py) / 100) * 5;
    expect(pixelToData([30, 20], [30, 20], invertX, invertY)).toEqual([0, 5]);
    expect(pixelToData([230, 120], [30, 20], invertX, invertY)).toEqual([10, 0]);
    expect(pixelToData([130, 70], [30, 20], invertX, invertY)).toEqual([5, 2.5]);
  });

  it("extendPath skips vertices closer than the step, and lassoPathData draws the path", () => {
    let path = extendPath([], [0, 0]);
    path = extendPath(path, [1, 1]);          // under 3 px: skipped
    path = extendPath(path, [10, 0]);
    expect(path).toEqual([[0, 0], [10, 0]]);
    expect(lassoPathData(path, false)).toBe("M0.0,0.0L10.0,0.0");
    expect(lassoPathData(path, true)).toBe("M0.0,0.0L10.0,0.0Z");
    expect(lassoPathData([], true)).toBe("");
  });
});

// jsdom has no PointerEvent: mouse events carrying a pointerId stand in for them
function pointer(type, target, x, y) {
  const e = new MouseEvent(type, { clientX: x, clientY: y, button: 0, bubbles: true, cancelable: true });
  Object.defineProperty(e, "pointerId", { value: 1 });
  target.dispatchEvent(e);
}

function setup() {
  const box = document.createElement("div");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const mark = document.createElementNS("http://www.w3.org/2000/svg", "path");
  svg.append(mark);
  box.append(svg);
  document.body.append(box);
  const lassos = [], vegaSaw = [];
  svg.addEventListener("pointerdown", () => vegaSaw.push("pointerdown"));   // where Vega listens
  const lasso = mountLasso(box, () => svg, (path) => lassos.push(path));
  return { box, svg, mark, lasso, lassos, vegaSaw };
}

describe("mountLasso", () => {
  it("turns a drag into a closed path and keeps the press from the box brush", () => {
    const { box, mark, lassos, vegaSaw } = setup();
    pointer("pointerdown", mark, 10, 10);
    for (const [x, y] of [[60, 10], [60, 60], [10, 60]]) pointer("pointermove", mark, x, y);
    pointer("pointerup", mark, 10, 12);
    expect(vegaSaw).toEqual([]);
    expect(lassos).toHaveLength(1);
    expect(lassos[0].slice(0, 4)).toEqual([[10, 10], [60, 10], [60, 60], [10, 60]]);
    expect(box.querySelector(".nbml-lasso path").getAttribute("d")).toMatch(/^M10\.0,10\.0L60\.0,10\.0.*Z$/);
    // once it is done, moving the mouse (hovering for a tooltip) neither changes it nor is kept from Vega
    const drawn = box.querySelector(".nbml-lasso path").getAttribute("d");
    const hovers = [];
    box.querySelector("svg").addEventListener("pointermove", () => hovers.push(1));
    pointer("pointermove", mark, 90, 90);
    expect(box.querySelector(".nbml-lasso path").getAttribute("d")).toBe(drawn);
    expect(hovers).toHaveLength(1);
  });

  it("leaves a click (a press that hardly moves) to Vega, and a scribble selects nothing", () => {
    const { mark, lassos } = setup();
    pointer("pointerdown", mark, 10, 10);
    pointer("pointermove", mark, 11, 11);
    pointer("pointerup", mark, 11, 11);
    expect(lassos).toEqual([]);
    pointer("pointerdown", mark, 10, 10);
    pointer("pointermove", mark, 30, 10);
    pointer("pointerup", mark, 50, 10);        // a straight stroke: no area
    expect(lassos).toEqual([[]]);
  });

  it("does nothing in box mode, so Vega's brush gets the press", () => {
    const { mark, lasso, lassos, vegaSaw } = setup();
    lasso.setEnabled(false);
    pointer("pointerdown", mark, 10, 10);
    pointer("pointermove", mark, 60, 60);
    pointer("pointerup", mark, 60, 60);
    expect(lassos).toEqual([]);
    expect(vegaSaw).toEqual(["pointerdown"]);
  });
});
