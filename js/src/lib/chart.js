// Vega-Lite charts (specs built in Python with altair), embedded with vega-embed from the bundle (no CDN).
// Rows arrive in place through named data sources, so the chart grows without being redrawn from scratch.
import embed from "vega-embed";

export async function mountChart(el, spec) {
  const result = await embed(el, spec, { actions: false, renderer: "svg", mode: "vega-lite" });
  return result.view;
}

/** Append rows to named data sources: {batches: [...], epochs: [...]} */
export async function insertRows(view, rowsByName) {
  for (const [name, rows] of Object.entries(rowsByName)) {
    if (rows && rows.length) view.insert(name, rows);
  }
  view.resize();          // lay the chart out again for its new data: axis titles stay inside the view
  await view.runAsync();
}
