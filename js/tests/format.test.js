import { describe, it, expect, vi } from "vitest";
import { statusLine } from "../src/monitor.js";
import { tableHtml } from "../src/runs.js";
import { reviewCaption } from "../src/lib/review.js";

// monitor.js and runs.js import ./lib/chart.js, which pulls in vega-embed; the pure formatters tested here do
// not draw charts, so the chart module is replaced (vi.mock is hoisted above the imports) to keep the tests fast and independent of vega.
vi.mock("../src/lib/chart.js", () => ({ mountChart: vi.fn(async () => null), insertRows: vi.fn(async () => {}) }));


describe("statusLine", () => {
  it("says starting before any status arrives", () => {
    expect(statusLine(undefined)).toBe("starting…");
    expect(statusLine(null)).toBe("starting…");
    expect(statusLine({})).toBe("starting…");
    expect(statusLine({ progress: 0.5 })).toBe("starting…");
  });

  it("shows epoch, lr, loss, elapsed and eta while running", () => {
    const st = { state: "running", phase: "fine_tune", epoch: 1, epochs: 5, lr: 0.003, loss: 0.123456,
      elapsed_s: 65, eta_s: 125.4 };
    expect(statusLine(st)).toBe("running · fine_tune phase · epoch 2/5 · lr 3.00e-3 · loss 0.1235 · elapsed 1:05 · eta 2:05");
  });

  it("counts epochs from 1, starts at epoch 1 without an epoch, and never passes the last one", () => {
    expect(statusLine({ state: "running", epochs: 3, elapsed_s: 0, eta_s: 0 })).toBe("running · epoch 1/3 · elapsed 0:00 · eta 0:00");
    expect(statusLine({ state: "done", epoch: 3, epochs: 3, elapsed_s: 0 })).toContain("epoch 3/3");
  });

  it("names the learning-rate finder phase", () => {
    expect(statusLine({ state: "running", phase: "lr_find", elapsed_s: 3 })).toBe("running · finding a learning rate · elapsed 0:03 · eta ?");
  });

  it("shows an unknown eta or elapsed as ?", () => {
    expect(statusLine({ state: "running", elapsed_s: null, eta_s: undefined })).toBe("running · elapsed ? · eta ?");
    expect(statusLine({ state: "running", elapsed_s: Infinity, eta_s: NaN })).toBe("running · elapsed ? · eta ?");
  });

  it("shows a zero loss but no zero lr", () => {
    expect(statusLine({ state: "running", loss: 0, lr: 0, elapsed_s: 1, eta_s: 1 })).toBe("running · loss 0.0000 · elapsed 0:01 · eta 0:01");
  });

  it("drops the eta once stopped", () => {
    const line = statusLine({ state: "stopped", epoch: 2, epochs: 10, lr: 1e-4, elapsed_s: 600, eta_s: 99 });
    expect(line).toBe("stopped · epoch 3/10 · lr 1.00e-4 · elapsed 10:00");
    expect(line).not.toContain("eta");
  });

  it("rounds elapsed seconds and pads them", () => {
    expect(statusLine({ state: "done", elapsed_s: 59.6 })).toBe("done · elapsed 1:00");
    expect(statusLine({ state: "done", elapsed_s: 3723 })).toBe("done · elapsed 62:03");
  });
});

describe("tableHtml", () => {
  it("builds the header and one row per run", () => {
    const html = tableHtml(["run", "acc"], [{ run: 1, acc: 0.5 }, { run: 2, acc: 0.25 }]);
    expect(html).toBe("<table><thead><tr><th>run</th><th>acc</th></tr></thead><tbody>" +
      "<tr><td>1</td><td>0.5000</td></tr><tr><td>2</td><td>0.2500</td></tr></tbody></table>");
  });

  it("formats non-integer numbers to 4 decimals and leaves integers alone", () => {
    const html = tableHtml(["a", "b", "c", "d"], [{ a: 0.123456789, b: 42, c: 1e-7, d: -3 }]);
    expect(html).toContain("<td>0.1235</td><td>42</td><td>0.0000</td><td>-3</td>");
    expect(html).not.toContain("42.0000");
  });

  it("shows null and missing values as empty cells but keeps 0 and false", () => {
    const html = tableHtml(["a", "b", "c", "d"], [{ a: null, c: 0, d: false }]);
    expect(html).toContain("<tr><td></td><td></td><td>0</td><td>false</td></tr>");
  });

  it("escapes HTML in headers and values", () => {
    const html = tableHtml(["<b>", "note"], [{ "<b>": "<script>x</script>", note: `a & "b"` }]);
    expect(html).toContain("<th>&lt;b&gt;</th>");
    expect(html).toContain("<td>&lt;script&gt;x&lt;/script&gt;</td>");
    expect(html).toContain("<td>a &amp; &quot;b&quot;</td>");
    expect(html).not.toContain("<script>");
  });

  it("renders an empty body for no rows", () => {
    expect(tableHtml(["a"], [])).toBe("<table><thead><tr><th>a</th></tr></thead><tbody></tbody></table>");
  });
});

describe("reviewCaption", () => {
  it("shows label and prediction with their probabilities as percentages", () => {
    const lines = reviewCaption({ label: "cat", p_label: 0.123, suggestion: "dog", confidence: 0.876 });
    expect(lines).toEqual([
      '<span class="nbml-label">cat</span> <span class="nbml-muted">12%</span>',
      '<span class="nbml-muted">pred dog 88%</span>',
    ]);
  });

  it("shows 0% and 100% for the extremes", () => {
    const lines = reviewCaption({ label: "cat", p_label: 0, suggestion: "cat", confidence: 1 });
    expect(lines[0]).toContain(">0%<");
    expect(lines[1]).toBe('<span class="nbml-muted">pred cat 100%</span>');
  });

  it("shows a missing probability, prediction or label as ? / unlabelled", () => {
    const lines = reviewCaption({ label: null, p_label: null });
    expect(lines).toEqual([
      '<span class="nbml-label">unlabelled</span> <span class="nbml-muted">?</span>',
      '<span class="nbml-muted">pred ? ?</span>',
    ]);
  });

  it("adds the loss line only when the loss is a number", () => {
    const base = { label: "cat", p_label: 0.5, suggestion: "dog", confidence: 0.5, split: "valid" };
    expect(reviewCaption(base)).toHaveLength(2);
    expect(reviewCaption({ ...base, loss: null })).toHaveLength(2);
    const lines = reviewCaption({ ...base, loss: 2.3456 });
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('<span class="nbml-muted">loss 2.35 · valid</span>');
    expect(reviewCaption({ ...base, loss: 0 })[2]).toBe('<span class="nbml-muted">loss 0.00 · valid</span>');
  });

  it("escapes HTML in label, prediction and split", () => {
    const lines = reviewCaption({ label: "<i>a</i>", p_label: 0.5, suggestion: "<b>", confidence: 0.5, loss: 1, split: "<s>" });
    expect(lines[0]).toContain("&lt;i&gt;a&lt;/i&gt;");
    expect(lines[1]).toContain("pred &lt;b&gt; 50%");
    expect(lines[2]).toContain("· &lt;s&gt;");
    expect(lines.join("")).not.toMatch(/<(i|b|s)>/);
  });
});
