// Alerts: the active list (live), filters, acknowledge / resolve, each alert's history.
import { api, enc, get } from "../api.js";
import { announce, fill, h, markLoaded, notice, serialized } from "../dom.js";
import { ago, num, shortKey, when } from "../format.js";

const STATUSES = ["ACTIVE", "ACKNOWLEDGED", "RESOLVED"];

function statusFilter(value, onChange) {
  return h("label", {}, "Status ",
    h("select", { name: "status", onchange: onChange },
      h("option", { value: "open", selected: value === "open" }, "Open (active and acknowledged)"),
      ...STATUSES.map((s) => h("option", { value: s, selected: value === s }, s.toLowerCase())),
      h("option", { value: "all", selected: value === "all" }, "All")));
}

async function historyOf(alert, cell) {
  const rows = await get(`/api/alerts/${enc(alert.id)}/history`);
  fill(cell, h("table", { class: "history" },
    h("caption", {}, `History of the alert on ${alert.resourceKey}`),
    h("thead", {}, h("tr", {}, ...["When", "Change", "By", "Comment"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((t) => h("tr", {},
      h("td", {}, when(t.at)),
      h("td", {}, `${t.fromStatus || "—"} → ${t.toStatus}${t.severity ? ` (${t.severity})` : ""}`),
      h("td", {}, t.actor || "—"),
      h("td", {}, t.comment || t.resolution || ""))))));
}

export async function render(ctx) {
  const { main, session, live } = ctx;
  const canWrite = session.scopes.includes("write");
  const state = { status: "open", customer: ctx.customer || "", text: "" };
  const tbody = h("tbody");
  const count = h("p", { class: "muted", id: "alert-count", tabindex: "-1", "aria-live": "polite" });
  const customerSel = h("select", { name: "customer", onchange: (e) => { state.customer = e.target.value; refresh(); } },
    h("option", { value: "" }, "All customers"),
    ...session.customers.map((c) => h("option", { value: c, selected: c === state.customer }, c)));
  const search = h("input", { type: "search", name: "resource", placeholder: "resource key contains…",
    oninput: (e) => { state.text = e.target.value.trim(); refresh(); } });
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter alerts", onsubmit: (e) => e.preventDefault() },
    statusFilter(state.status, (e) => { state.status = e.target.value; refresh(); }),
    h("label", {}, "Customer ", customerSel),
    h("label", {}, "Resource ", search));
  fill(main, h("h1", { tabindex: "-1" }, "Alerts"), filters, count,
    h("table", { class: "alerts" },
      h("caption", { class: "visually-hidden" }, "Alerts, newest first"),
      h("thead", {}, h("tr", {}, ...["Severity", "Resource", "Message", "Value", "Status", "Raised", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
      tbody));

  async function act(alert, action, button) {
    button.disabled = true;
    try {
      await api(`/api/alerts/${enc(alert.id)}/${action}`, { method: "POST", body: {} });
      announce(`Alert on ${alert.resourceKey} ${action === "acknowledge" ? "acknowledged" : "resolved"}.`);
      await refresh(true);
      const next = tbody.querySelector("button:not([disabled])");
      if (next) next.focus();
      else count.focus();
    } catch (err) {
      announce(`Could not ${action} the alert: ${err.message}`);
      button.disabled = false;
    }
  }

  function row(alert) {
    const actions = h("td", { class: "actions" });
    const detail = h("td", { colspan: 7 });
    const detailRow = h("tr", { class: "detail", hidden: true }, detail);
    const label = `${alert.alertType} on ${alert.resourceKey}`;
    if (canWrite && alert.status === "ACTIVE") {
      const b = h("button", { type: "button", "aria-label": `Acknowledge ${label}` }, "Acknowledge");
      b.addEventListener("click", () => act(alert, "acknowledge", b));
      actions.append(b);
    }
    if (canWrite && alert.status !== "RESOLVED") {
      const b = h("button", { type: "button", "aria-label": `Resolve ${label}` }, "Resolve");
      b.addEventListener("click", () => act(alert, "resolve", b));
      actions.append(b);
    }
    const toggle = h("button", { type: "button", class: "link", "aria-expanded": "false", "aria-label": `History of ${label}` }, "History");
    toggle.addEventListener("click", async () => {
      const open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", String(!open));
      detailRow.hidden = open;
      if (!open) await historyOf(alert, detail).catch((err) => fill(detail, notice(err.message, "error")));
    });
    actions.append(toggle);
    const sev = alert.severity.toLowerCase();
    return [h("tr", { class: `alert sev-${sev}`, dataset: { alert: alert.id, status: alert.status } },
      h("td", {}, h("span", { class: `badge badge-${sev}` }, alert.severity)),
      h("td", {}, shortKey(alert.resourceKey, alert.customerId), h("div", { class: "muted" }, alert.customerId)),
      h("td", {}, alert.message),
      h("td", { class: "num" }, alert.currentValue === null ? "—" : `${num(alert.currentValue)} ${alert.unit || ""}`),
      h("td", {}, alert.status.toLowerCase(),
        alert.acknowledgedBy ? h("div", { class: "muted" }, `by ${alert.acknowledgedBy}`) : null),
      h("td", {}, h("time", { datetime: alert.createdAt, title: when(alert.createdAt) }, ago(alert.createdAt))),
      actions), detailRow];
  }

  let shown = "";
  const refresh = serialized(async (force = false) => {
    try {
      const params = new URLSearchParams({ limit: "200" });
      if (state.status !== "open" && state.status !== "all") params.set("status", state.status);
      if (state.customer) params.set("customerId", state.customer);
      const data = await get(`/api/alerts?${params}`);
      let alerts = Array.isArray(data) ? data : data.items || [];
      if (state.status === "open") alerts = alerts.filter((a) => a.status !== "RESOLVED");
      if (state.text) alerts = alerts.filter((a) => a.resourceKey.includes(state.text));
      const digest = JSON.stringify(alerts.map((a) => [a.id, a.status, a.currentValue]));
      if (digest === shown && !force) return; // unchanged: keep focus and open histories
      shown = digest;
      const hadFocus = main.contains(document.activeElement) && tbody.contains(document.activeElement)
        ? document.activeElement.getAttribute("aria-label") : null;
      fill(tbody, alerts.length ? alerts.map(row) : h("tr", {}, h("td", { colspan: 7 }, "No alerts match.")));
      count.textContent = `${alerts.length} alert${alerts.length === 1 ? "" : "s"}`;
      markLoaded(main, "alerts");
      if (hadFocus) {
        const again = [...tbody.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === hadFocus);
        if (again) again.focus();
      }
    } catch (err) {
      fill(tbody, h("tr", {}, h("td", { colspan: 7 }, notice(`Could not load alerts: ${err.message}`, "error"))));
    }
  });
  await refresh(true);
  return live.subscribe(["alert"], () => refresh());
}
