// Overview: one card per resource of the customer, live.
import { enc, get, available } from "../api.js";
import { fill, h, markLoaded, notice, serialized } from "../dom.js";
import { ago, levelOf, num, shortKey, when } from "../format.js";

const LEVEL_TEXT = { ok: "OK", warning: "Warning", critical: "Critical", none: "No limit" };

/** Base units -> catalog units, from a resource's own two figures (display only). */
function factorOf(cur) {
  if (cur.limit && cur.limitInUnit !== null) return Number(cur.limitInUnit) / cur.limit;
  if (cur.usage) return Number(cur.usageInUnit) / cur.usage;
  return null;
}

function forecastText(fc, cur) {
  if (!fc) return "Forecast: none stored yet";
  if (!fc.forecast) return `Forecast: none (${fc.reasonDetail || fc.reason || "not enough data"})`;
  const f = factorOf(cur);
  if (f === null) return "Forecast: —";
  const unit = cur.catalogUnit;
  let text = `Forecast for ${fc.periodEnd}: ${num(fc.predictedUsage * f)} ${unit}`;
  if (fc.usageInterval80) {
    const [lo, hi] = fc.usageInterval80;
    text += ` (80 %: ${num(lo * f)}–${num(hi * f)})`;
  }
  return text;
}

function trendOf(points) {
  // change of the last half of the window against the first half
  if (!points || points.length < 4) return null;
  const values = points.map((p) => Number(p.value));
  const mid = Math.floor(values.length / 2);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const before = sum(values.slice(0, mid));
  const after = sum(values.slice(mid));
  if (before === 0) return null;
  return ((after - before) / before) * 100;
}

function card(cur, res, fc, trend) {
  const name = shortKey(cur.resourceKey, res ? res.customerId : cur.resourceKey.split("/")[0]);
  const warning = res ? res.warningThreshold : 80;
  const critical = res ? res.criticalThreshold : 95;
  const level = levelOf(cur.percentage, warning, critical);
  const pct = cur.percentage === null ? null : Number(cur.percentage);
  const id = `card-${cur.resourceKey.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
  const fillBar = h("div", { class: "fill" });
  fillBar.style.width = `${Math.min(100, pct || 0)}%`;
  const warnTick = h("span", { class: "tick tick-warning", "aria-hidden": "true" });
  warnTick.style.left = `${Math.min(100, Number(warning))}%`;
  const critTick = h("span", { class: "tick tick-critical", "aria-hidden": "true" });
  critTick.style.left = `${Math.min(100, Number(critical))}%`;
  const meter = h("div", {
    class: "bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": pct === null ? 0 : Math.min(100, pct),
    "aria-valuetext": pct === null ? "no limit" : `${num(pct)} % of the limit, ${LEVEL_TEXT[level]}`,
    "aria-labelledby": `${id}-title`,
  }, fillBar, warnTick, critTick);
  let trendText = "Trend: —";
  let trendClass = "trend";
  if (trend !== null && trend !== undefined) {
    const arrow = trend > 0.5 ? "▲" : trend < -0.5 ? "▼" : "▶";
    trendText = `Trend (24 h): ${arrow} ${num(Math.abs(trend))} %`;
    trendClass += trend > 0.5 ? " up" : trend < -0.5 ? " down" : "";
  }
  return h("article", { class: `card level-${level}`, id, "aria-labelledby": `${id}-title`, dataset: { resource: cur.resourceKey } },
    h("header", {},
      h("h2", { id: `${id}-title` }, name),
      h("span", { class: `badge badge-${level}` }, LEVEL_TEXT[level])),
    h("p", { class: "figure" },
      h("span", { class: "usage" }, num(cur.usageInUnit)),
      " / ",
      h("span", { class: "limit" }, cur.limitInUnit === null ? "no limit" : num(cur.limitInUnit)),
      ` ${cur.catalogUnit}`),
    meter,
    h("p", { class: "pct" }, pct === null ? "—" : `${num(pct)} %`,
      h("span", { class: "thresholds" }, ` (warning ${num(warning)} %, critical ${num(critical)} %)`)),
    h("p", { class: trendClass }, trendText),
    h("p", { class: "forecast" }, forecastText(fc, cur)),
    h("p", { class: "updated" }, "Updated ", h("time", { datetime: new Date(cur.updated).toISOString(), title: when(cur.updated) }, ago(cur.updated))));
}

export async function render(ctx) {
  const { main, customer, live } = ctx;
  if (!customer) {
    fill(main, notice("This key sees no customers yet."));
    return () => {};
  }
  const grid = h("div", { class: "cards", "aria-live": "off" });
  const info = h("p", { class: "muted" });
  fill(main, h("h1", { tabindex: "-1" }, `Overview — ${customer}`), info, grid);
  let forecasts = {};
  let trends = {};
  let history = null; // unknown until probed
  let lastSlow = 0;

  async function slow(current) {
    try {
      const fc = await get(`/api/forecasts/customers/${enc(customer)}`);
      forecasts = Object.fromEntries((fc.forecasts || []).map((f) => [f.resourceKey, f]));
    } catch {
      forecasts = {};
    }
    if (current.length && history === null) {
      history = await available(`/api/usage/customers/${enc(customer)}/resources/${enc(current[0].resourceKey)}/history?range=1h&points=2`);
    }
    if (history) {
      const got = await Promise.all(current.map((c) =>
        get(`/api/usage/customers/${enc(customer)}/resources/${enc(c.resourceKey)}/history?range=24h&points=48`)
          .then((d) => [c.resourceKey, trendOf(d.points)]).catch(() => [c.resourceKey, null])));
      trends = Object.fromEntries(got);
    }
  }

  let last = null;

  function draw() {
    const [current, resources] = last;
    const byKey = Object.fromEntries(resources.map((r) => [r.resourceKey, r]));
    fill(grid, current.length ? current.map((c) => card(c, byKey[c.resourceKey], forecasts[c.resourceKey], trends[c.resourceKey])) : notice("No resources yet: readings create them."));
    info.textContent = history === false ? "Trends need usage history, which this hub does not serve." : "";
  }

  const refresh = serialized(async () => {
    try {
      const [current, resources] = await Promise.all([
        get(`/api/metrics/customer/${enc(customer)}/current`),
        get(`/api/monitoring/customers/${enc(customer)}/resources`),
      ]);
      current.sort((a, b) => a.resourceKey.localeCompare(b.resourceKey));
      last = [current, resources];
      draw();
      markLoaded(main, "overview");
      // the first cards drawn since the page loaded (what "first load" is measured to)
      if (!performance.getEntriesByName("resmon:cards").length) performance.mark("resmon:cards");
      if (Date.now() - lastSlow > 60000) {
        // forecasts and trends change slowly: fetched after the cards are drawn, once a minute
        lastSlow = Date.now();
        slow(current).then(() => last && draw()).catch(() => {});
      }
    } catch (err) {
      fill(grid, notice(`Could not load the usage: ${err.message}`, "error"));
    }
  });

  await refresh();
  return live.subscribe(["usage", "alert"], refresh);
}
