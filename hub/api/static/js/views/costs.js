// Costs: each resource's bill for the current or a past period, the customers' totals,
// and the forecast of the period's cost with its confidence.
import { enc, get } from "../api.js";
import { fill, h, markLoaded, notice } from "../dom.js";
import { money, num, shortKey } from "../format.js";

function months(n) {
  const out = [];
  const d = new Date();
  for (let i = 1; i <= n; i += 1) {
    const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1));
    out.push(`${m.getUTCFullYear()}-${String(m.getUTCMonth() + 1).padStart(2, "0")}`);
  }
  return out;
}

function lines(breakdown) {
  return h("ul", { class: "lines" }, breakdown.lines.map((l) =>
    h("li", {}, `${l.description}: ${money(l.amount, breakdown.currency)}`)));
}

function billTable(bill) {
  return h("table", { class: "costs" },
    h("caption", {}, `Bill of ${bill.customerId} for ${bill.period}`),
    h("thead", {}, h("tr", {}, ...["Resource", "Usage", "Allowance", "Over", "Rule", "Lines", "Total"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, bill.resources.map((v) => {
      const b = v.breakdown;
      return h("tr", { dataset: { resource: v.resourceKey } },
        h("th", { scope: "row" }, shortKey(v.resourceKey, bill.customerId),
          h("div", { class: "muted" }, v.stored ? "closed bill (stored)" : v.closed ? "closed period" : "to date")),
        h("td", { class: "num" }, `${num(b.usage)} ${b.unit}`),
        h("td", { class: "num" }, b.limit === null ? "—" : `${num(b.limit)} ${b.unit}`),
        h("td", { class: "num" }, b.overagePercent === null ? "—" : `${num(b.overagePercent)} %`),
        h("td", {}, b.rule),
        h("td", {}, lines(b)),
        h("td", { class: "num total" }, money(b.total, b.currency)));
    })),
    h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: 6 }, "Total"),
      h("td", { class: "num total" }, bill.total === null ? "mixed currencies" : money(bill.total, bill.currency)))));
}

function forecastTable(customer, forecasts) {
  const made = forecasts.filter((f) => f.forecast);
  if (!made.length) return notice("No cost forecast stored yet for this customer (the hub refreshes them on a schedule).");
  return h("table", { class: "forecasts" },
    h("caption", {}, `Forecast of the period's cost, ${customer}`),
    h("thead", {}, h("tr", {}, ...["Resource", "Period end", "Predicted cost", "80 % interval", "95 % interval", "Measured coverage", "P(above limit)"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, made.map((f) => h("tr", {},
      h("th", { scope: "row" }, shortKey(f.resourceKey, customer)),
      h("td", {}, f.periodEnd),
      h("td", { class: "num" }, f.predictedCost == null ? (f.costUnavailable || "—") : money(f.predictedCost, f.currency)),
      h("td", { class: "num" }, f.costInterval80 ? `${f.costInterval80[0]}–${f.costInterval80[1]} ${f.currency}` : "—"),
      h("td", { class: "num" }, f.costInterval95 ? `${f.costInterval95[0]}–${f.costInterval95[1]} ${f.currency}` : "—"),
      h("td", { class: "num" }, f.coverage80 == null ? "—" : `${num(Number(f.coverage80) * 100)} %`),
      h("td", { class: "num" }, f.probabilityAboveLimit == null ? "—" : `${num(Number(f.probabilityAboveLimit) * 100)} %`)))));
}

export async function render(ctx) {
  const { main, session, customer } = ctx;
  if (!customer) {
    fill(main, notice("This key sees no customers yet."));
    return () => {};
  }
  const body = h("div");
  const select = h("select", { name: "period", onchange: () => load() },
    h("option", { value: "" }, "Current period (to date)"),
    ...months(12).map((m) => h("option", { value: m }, m)));
  fill(main, h("h1", { tabindex: "-1" }, `Costs — ${customer}`),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, h("label", {}, "Period ", select)), body);

  async function load() {
    const period = select.value;
    const q = period ? `?period=${enc(period)}` : "";
    fill(body, h("p", { class: "muted" }, "Loading…"));
    try {
      const [bill, fc] = await Promise.all([
        get(`/api/costs/customers/${enc(customer)}${q}`),
        get(`/api/forecasts/customers/${enc(customer)}`),
      ]);
      const parts = [billTable(bill)];
      if (!period) parts.push(h("h2", {}, "Forecast"), forecastTable(customer, fc.forecasts || []));
      if (session.customers.length > 1) parts.push(h("h2", {}, "All customers"), await customersTable(session.customers.slice(0, 50), q));
      fill(body, ...parts);
      markLoaded(main, "costs");
    } catch (err) {
      fill(body, notice(`Could not load the costs: ${err.message}`, "error"));
    }
  }
  await load();
  return () => {};
}

async function customersTable(customers, q) {
  const bills = await Promise.all(customers.map((c) => get(`/api/costs/customers/${enc(c)}${q}`).catch((err) => ({ customerId: c, error: err.message }))));
  return h("table", { class: "costs" },
    h("caption", {}, "Each customer's total"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Customer"), h("th", { scope: "col" }, "Resources"), h("th", { scope: "col" }, "Total"))),
    h("tbody", {}, bills.map((b) => h("tr", {},
      h("th", { scope: "row" }, b.customerId),
      h("td", { class: "num" }, b.error ? "—" : String(b.resources.length)),
      h("td", { class: "num" }, b.error ? b.error : b.total === null ? "mixed currencies" : money(b.total, b.currency))))));
}
