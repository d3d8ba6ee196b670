// Usage chart of one resource: 1H / 24H / 7D / 30D or a custom range, the limit and the
// thresholds as lines, the forecast interval as a band. The hub downsamples (about one
// point per pixel); uPlot (vendored) draws.
import { enc, get, ApiError } from "../api.js";
import { fill, h, markLoaded, notice } from "../dom.js";
import { shortKey } from "../format.js";

const RANGES = [["1h", "1H"], ["24h", "24H"], ["7d", "7D"], ["30d", "30D"]];
let uplotReady = null;

/** Load the vendored uPlot once (a classic script: it defines window.uPlot). */
function loadUplot() {
  if (!uplotReady) {
    uplotReady = new Promise((resolve, reject) => {
      document.head.append(h("link", { rel: "stylesheet", href: "/ui/static/vendor/uplot/uPlot.min.css" }));
      const s = h("script", { src: "/ui/static/vendor/uplot/uPlot.iife.min.js" });
      s.addEventListener("load", () => resolve(window.uPlot));
      s.addEventListener("error", () => reject(new Error("the chart library did not load")));
      document.head.append(s);
    });
  }
  return uplotReady;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export async function render(ctx) {
  const { main, customer, live } = ctx;
  if (!customer) {
    fill(main, notice("This key sees no customers yet."));
    return () => {};
  }
  let resources = await get(`/api/monitoring/customers/${enc(customer)}/resources`);
  if (!resources.length) {
    fill(main, h("h1", { tabindex: "-1" }, "Usage chart"), notice("No resources yet."));
    return () => {};
  }
  const state = { resource: ctx.params.get("resource") || resources[0].resourceKey, range: ctx.params.get("range") || "24h" };
  const plotBox = h("div", { class: "plot", role: "img", "aria-label": "Usage chart" });
  const summary = h("p", { class: "muted", id: "chart-summary", "aria-live": "polite" });
  const select = h("select", { name: "resource", onchange: (e) => { state.resource = e.target.value; load(); } },
    resources.map((r) => h("option", { value: r.resourceKey, selected: r.resourceKey === state.resource }, shortKey(r.resourceKey, customer))));
  const buttons = RANGES.map(([value, label]) => {
    const b = h("button", { type: "button", "aria-pressed": String(value === state.range), dataset: { range: value } }, label);
    b.addEventListener("click", () => { state.range = value; state.from = state.to = null; load(); });
    return b;
  });
  const from = h("input", { type: "datetime-local", name: "from" });
  const to = h("input", { type: "datetime-local", name: "to" });
  const custom = h("form", { class: "custom-range", onsubmit: (e) => {
    e.preventDefault();
    if (!from.value || !to.value) return;
    state.range = null;
    state.from = new Date(from.value).toISOString();
    state.to = new Date(to.value).toISOString();
    load();
  } }, h("label", {}, "From ", from), h("label", {}, "To ", to), h("button", { type: "submit" }, "Show"));
  fill(main, h("h1", { tabindex: "-1" }, `Usage chart — ${customer}`),
    h("div", { class: "filters" }, h("label", {}, "Resource ", select),
      h("div", { role: "group", "aria-label": "Time range", class: "segmented" }, buttons)),
    custom, summary, plotBox);
  let plot = null;

  async function load() {
    resources = await get(`/api/monitoring/customers/${enc(customer)}/resources`);
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.range === state.range));
    const points = Math.max(100, Math.min(5000, Math.round(plotBox.clientWidth || 800)));
    const q = state.range ? `range=${state.range}` : `from=${enc(state.from)}&to=${enc(state.to)}`;
    let data;
    try {
      data = await get(`/api/usage/customers/${enc(customer)}/resources/${enc(state.resource)}/history?${q}&points=${points}`);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        fill(plotBox, notice("Usage history is not available on this hub (it does not serve /api/usage/…/history yet)."));
        summary.textContent = "";
        markLoaded(main, "chart");
        return;
      }
      fill(plotBox, notice(`Could not load the history: ${err.message}`, "error"));
      return;
    }
    let fc = null;
    try {
      const got = await get(`/api/forecasts/customers/${enc(customer)}?resourceKey=${enc(state.resource)}`);
      fc = (got.forecasts || []).find((f) => f.forecast) || null;
    } catch {
      fc = null;
    }
    draw(data, fc);
  }

  async function draw(data, fc) {
    const uPlot = await loadUplot();
    const res = resources.find((r) => r.resourceKey === state.resource) || {};
    const xs = data.points.map((p) => Date.parse(p.t) / 1000);
    let ys = data.points.map((p) => Number(p.value));
    let label = `Usage (${data.unit})`;
    if (data.kind === "delta") {
      // a limit is per billing period: draw the period's usage so far at each bucket's end
      // (today's total less what came after), nothing before the period started
      const periodStart = res.periodStart ? Date.parse(`${res.periodStart}T00:00:00Z`) / 1000 : -Infinity;
      let after = 0;
      const now = Number(res.usageInUnit);
      ys = ys.map((v, i) => [v, i]).reverse().map(([v, i]) => {
        const shown = xs[i] + data.stepSeconds > periodStart ? now - after : null;
        after += v;
        return shown;
      }).reverse();
      label = `Usage in the period (${data.unit})`;
    }
    const limit = data.limitInUnit === null || data.limitInUnit === undefined ? null : Number(data.limitInUnit);
    const cols = [xs, ys];
    const series = [{}, { label, stroke: cssVar("--accent"), width: 2 }];
    const bands = [];
    // the whole window on the time axis, and the lines across it, however few the points
    const fromX = Date.parse(data.from) / 1000;
    const toX = Date.parse(data.to) / 1000;
    if (!xs.length || xs[0] > fromX) {
      xs.unshift(fromX);
      ys.unshift(null);
    }
    if (xs[xs.length - 1] < toX) {
      xs.push(toX);
      ys.push(data.kind === "delta" ? Number(res.usageInUnit) : ys[ys.length - 1]);
    }
    // the forecast for the period end as a band from now, on the ranges that reach that far
    const end = fc && fc.usageInterval80 && data.limit ? Date.parse(`${fc.periodEnd}T23:59:59Z`) / 1000 : null;
    const withForecast = end !== null && xs.length > 0 && data.kind === "delta" && (state.range === "7d" || state.range === "30d") && end > xs[xs.length - 1];
    if (withForecast) {
      xs.push(end);
      ys.push(null);
    }
    const line = (v) => xs.map(() => v);
    if (limit !== null) {
      cols.push(line(limit), line((limit * Number(data.warningThreshold)) / 100), line((limit * Number(data.criticalThreshold)) / 100));
      const flat = { points: { show: false } };
      series.push({ label: "Limit", stroke: cssVar("--fg"), dash: [6, 4], ...flat },
        { label: `Warning (${data.warningThreshold} %)`, stroke: cssVar("--warning"), dash: [4, 4], ...flat },
        { label: `Critical (${data.criticalThreshold} %)`, stroke: cssVar("--critical"), dash: [4, 4], ...flat });
    }
    if (withForecast) {
      const f = Number(data.limitInUnit) / data.limit;
      const last = xs.length - 2;
      const at = (v) => xs.map((_, i) => (i === last ? ys[last] : i === last + 1 ? v * f : null));
      const hiIdx = cols.length;
      cols.push(at(fc.usageInterval80[1]), at(fc.usageInterval80[0]));
      series.push({ label: "Forecast, 80 % high", stroke: cssVar("--muted"), width: 1 },
        { label: "Forecast, 80 % low", stroke: cssVar("--muted"), width: 1 });
      bands.push({ series: [hiIdx, hiIdx + 1], fill: "rgba(120,120,200,0.2)" });
    }
    const opts = {
      width: Math.max(300, plotBox.clientWidth - 20 || 800), height: 320, series, bands,
      axes: [{ stroke: cssVar("--fg") }, { stroke: cssVar("--fg"), label: data.unit, size: 70 }],
      scales: { x: { time: true, range: [fromX, withForecast ? xs[xs.length - 1] : toX] } },
    };
    if (plot) plot.destroy();
    plotBox.replaceChildren();
    plot = new uPlot(opts, cols, plotBox);
    plotBox.setAttribute("aria-label", `Usage of ${state.resource}, ${data.from} to ${data.to}, ${data.points.length} points (${data.source} data)${limit !== null ? `, limit ${limit} ${data.unit}` : ""}`);
    summary.textContent = `${data.points.length} points, one every ${data.stepSeconds} s (${data.source} data), ${new Date(data.from).toLocaleString()} – ${new Date(data.to).toLocaleString()}${withForecast ? "; the band is the 80 % forecast interval for the period end" : ""}`;
    markLoaded(main, "chart");
    main.dataset.range = state.range || "custom";
  }

  await load();
  const stop = live.subscribe(["usage"], (type) => type && state.range === "1h" && load());
  return () => {
    stop();
    if (plot) plot.destroy();
  };
}
