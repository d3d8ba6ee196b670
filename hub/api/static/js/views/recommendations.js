// Recommendations: savings, evidence, and Apply / Dismiss after a confirmation that says
// what will change.
import { api, enc, listing } from "../api.js";
import { announce, confirmDialog, fill, h, markLoaded, notice, serialized } from "../dom.js";
import { money, shortKey, when } from "../format.js";

const KIND = {
  RESIZE_RESOURCE: "Resize",
  ELIMINATE_WASTE: "Remove an idle resource",
  COMPRESS_DATA: "Compress data",
};

/** What applying ``r`` does, in words. */
export function changeOf(r) {
  if (r.kind === "RESIZE_RESOURCE") {
    return `Applying moves ${r.resourceKey} to plan ${r.targetPlanId || "?"} (${r.direction === "up" ? "a larger" : "a smaller"} plan) and sets its limit to that plan's limit; the running hub uses the new limit at once. Expected saving: ${money(r.monthlySavings, r.currency)} a month.`;
  }
  return `Applying records that this was done for ${r.resourceKey} (${KIND[r.kind] || r.kind}); the hub changes nothing itself. Expected saving: ${money(r.monthlySavings, r.currency)} a month.`;
}

export async function render(ctx) {
  const { main, session, live } = ctx;
  const canWrite = session.scopes.includes("write");
  const list = h("div", { class: "recs" });
  const status = h("select", { name: "status", onchange: () => refresh() },
    ...["open", "applied", "dismissed"].map((s) => h("option", { value: s }, s)));
  const customerSel = h("select", { name: "customer", onchange: () => refresh() },
    h("option", { value: "" }, "All customers"),
    ...session.customers.map((c) => h("option", { value: c, selected: c === ctx.customer && session.customers.length === 1 }, c)));
  fill(main, h("h1", { tabindex: "-1" }, "Recommendations"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, h("label", {}, "Status ", status), h("label", {}, "Customer ", customerSel)),
    list);

  async function apply(r, button) {
    const ok = await confirmDialog({ title: `Apply: ${r.description}`, body: changeOf(r), confirm: "Apply" });
    if (!ok) return button.focus();
    try {
      await api(`/api/recommendations/${enc(r.recommendationId)}/apply`, { method: "POST", body: {} });
      announce(`Applied: ${r.description}`);
      await refresh();
    } catch (err) {
      announce(`Could not apply: ${err.message}`);
    }
  }

  async function dismiss(r, button) {
    const reason = h("textarea", { name: "reason", required: true, rows: 2 });
    const extra = h("label", { class: "stack" }, "Why is it dismissed? (required)", reason);
    const ok = await confirmDialog({
      title: `Dismiss: ${r.description}`,
      body: `Dismissing keeps ${r.resourceKey} as it is and hides this recommendation; the reason is kept in its audit trail.`,
      confirm: "Dismiss", extra,
    });
    if (!ok) return button.focus();
    try {
      await api(`/api/recommendations/${enc(r.recommendationId)}/dismiss`, { method: "POST", body: { reason: reason.value } });
      announce(`Dismissed: ${r.description}`);
      await refresh();
    } catch (err) {
      announce(`Could not dismiss: ${err.message}`);
    }
  }

  function item(r) {
    const actions = h("div", { class: "actions" });
    if (canWrite && r.status === "open") {
      const a = h("button", { type: "button", class: "primary" }, "Apply…");
      a.addEventListener("click", () => apply(r, a));
      const d = h("button", { type: "button" }, "Dismiss…");
      d.addEventListener("click", () => dismiss(r, d));
      actions.append(a, d);
    }
    const id = `rec-${r.recommendationId}`;
    return h("article", { class: "rec", "aria-labelledby": id, dataset: { recommendation: r.recommendationId, status: r.status } },
      h("header", {}, h("h2", { id }, r.description),
        h("span", { class: "savings" }, `saves ${money(r.monthlySavings, r.currency)} / month`)),
      h("p", { class: "muted" }, `${KIND[r.kind] || r.kind} · ${shortKey(r.resourceKey, r.customerId)} of ${r.customerId} · effort ${r.effort} · first seen ${when(r.firstSeen)}`),
      Object.keys(r.evidence || {}).length
        ? h("details", {}, h("summary", {}, "Evidence"),
          h("dl", { class: "evidence" }, Object.entries(r.evidence).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))
        : null,
      r.status !== "open" ? h("p", {}, `${r.status} by ${r.statusBy || "?"} ${when(r.statusAt)}${r.reason ? `: ${r.reason}` : ""}`) : null,
      actions);
  }

  const refresh = serialized(async () => {
    const params = new URLSearchParams({ status: status.value });
    if (customerSel.value) params.set("customerId", customerSel.value);
    try {
      const recs = await listing(`/api/recommendations?${params}`);
      fill(list, recs.length ? recs.map(item) : notice(`No ${status.value} recommendations.`));
      markLoaded(main, "recommendations");
    } catch (err) {
      fill(list, notice(`Could not load recommendations: ${err.message}`, "error"));
    }
  });
  await refresh();
  return live.subscribe(["recommendation"], (type) => type && refresh());
}
