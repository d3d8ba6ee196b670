// Configuration: each resource's limit and thresholds (on hubs that serve /api/config),
// and the tenant's API keys for an admin key.
import { api, available, enc, listing } from "../api.js";
import { announce, confirmDialog, fill, h, markLoaded, notice, serialized } from "../dom.js";
import { shortKey, when } from "../format.js";

function field(label, attrs) {
  return h("label", { class: "stack" }, label, h("input", attrs));
}

function resourceForm(customer, r, reload) {
  const limit = h("input", { name: "limitInUnit", inputmode: "decimal", value: r.limitInUnit ?? "", "aria-describedby": `unit-${r.resourceKey}` });
  const warning = h("input", { name: "warningThreshold", inputmode: "decimal", value: r.warningThreshold });
  const critical = h("input", { name: "criticalThreshold", inputmode: "decimal", value: r.criticalThreshold });
  const error = h("p", { class: "field-error", role: "alert" });
  const form = h("form", { class: "resource-config", dataset: { resource: r.resourceKey } },
    h("h3", {}, shortKey(r.resourceKey, customer), h("span", { class: "muted" }, ` ${r.resourceType}`)),
    h("label", { class: "stack" }, "Limit ", h("span", { id: `unit-${r.resourceKey}`, class: "muted" }, `(${r.catalogUnit}; empty: no limit)`), limit),
    h("label", { class: "stack" }, "Warning at (%)", warning),
    h("label", { class: "stack" }, "Critical at (%)", critical),
    h("p", { class: "muted" }, "Thresholds are percentages of the limit."),
    error,
    h("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const url = `/api/config/customers/${enc(customer)}/resources/${enc(r.resourceKey)}`;
    try {
      const { etag } = await api(url);
      const body = {
        limitInUnit: limit.value.trim() === "" ? null : limit.value.trim(),
        warningThreshold: warning.value.trim(),
        criticalThreshold: critical.value.trim(),
      };
      await api(url, { method: "PATCH", body, headers: etag ? { "If-Match": etag } : {} });
      announce(`Saved ${r.resourceKey}.`);
      await reload();
    } catch (err) {
      error.textContent = `Not saved: ${err.message}${err.where ? ` (${err.where})` : ""}`;
    }
  });
  return form;
}

async function keysSection(session) {
  const box = h("section", { "aria-labelledby": "keys-title" }, h("h2", { id: "keys-title" }, "API keys"));
  const table = h("tbody");
  const created = h("div", { "aria-live": "polite" });
  const load = serialized(async () => {
    const keys = await listing("/api/keys");
    fill(table, keys.map((k) => {
      const revoke = h("button", { type: "button", "aria-label": `Revoke key ${k.name}`, disabled: Boolean(k.revokedAt) || k.id === session.keyId }, "Revoke");
      revoke.addEventListener("click", async () => {
        const ok = await confirmDialog({ title: `Revoke ${k.name}?`, body: `Every caller using the key ${k.name} (and its dashboard sessions) is refused from now on. This cannot be undone.`, confirm: "Revoke" });
        if (!ok) return revoke.focus();
        await api(`/api/keys/${enc(k.id)}`, { method: "DELETE" });
        announce(`Revoked ${k.name}.`);
        await load();
      });
      return h("tr", {}, h("th", { scope: "row" }, k.name), h("td", {}, k.scopes.join(", ")),
        h("td", {}, k.customerIds ? k.customerIds.join(", ") : "all"),
        h("td", {}, k.revokedAt ? `revoked ${when(k.revokedAt)}` : k.expiresAt ? `expires ${when(k.expiresAt)}` : "active"),
        h("td", {}, when(k.lastUsedAt)), h("td", {}, revoke));
    }));
  });
  const name = h("input", { name: "name", required: true, maxlength: 200 });
  const scopes = ["read", "write", "ingest", "admin"].filter((s) => session.scopes.includes(s)).map((s) =>
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "scopes", value: s, checked: s === "read" }), ` ${s}`));
  const customers = h("input", { name: "customerIds", placeholder: "cust-1, cust-2 (empty: all)" });
  const expires = h("input", { name: "expiresIn", placeholder: "30d, 12h (empty: never)" });
  const error = h("p", { class: "field-error", role: "alert" });
  const form = h("form", { class: "new-key" }, h("h3", {}, "New key"),
    h("label", { class: "stack" }, "Name", name),
    h("fieldset", {}, h("legend", {}, "Scopes"), scopes),
    h("label", { class: "stack" }, "Customers", customers),
    h("label", { class: "stack" }, "Expires in", expires), error,
    h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const body = { name: name.value, scopes: [...form.querySelectorAll("input[name=scopes]:checked")].map((c) => c.value) };
    const ids = customers.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (ids.length) body.customerIds = ids;
    if (expires.value.trim()) body.expiresIn = expires.value.trim();
    try {
      const { data } = await api("/api/keys", { method: "POST", body });
      fill(created, h("p", { class: "notice" }, "The new key, shown only now: ", h("code", { class: "secret" }, data.key)));
      form.reset();
      await load();
    } catch (err) {
      error.textContent = `Not created: ${err.message}`;
    }
  });
  box.append(h("table", {}, h("caption", { class: "visually-hidden" }, "The tenant's API keys"),
    h("thead", {}, h("tr", {}, ...["Name", "Scopes", "Customers", "State", "Last used", ""].map((t) => h("th", { scope: "col" }, t)))), table), created, form);
  await load();
  return box;
}

export async function render(ctx) {
  const { main, session, customer } = ctx;
  const resources = h("section", { "aria-labelledby": "limits-title" }, h("h2", { id: "limits-title" }, "Limits and thresholds"));
  fill(main, h("h1", { tabindex: "-1" }, "Configuration"), resources);
  try {
    await limits(resources, customer);
  } catch (err) {
    resources.append(notice(`Could not load the configuration: ${err.message}`, "error"));
  }
  if (session.scopes.includes("admin")) {
    let keys;
    try {
      keys = await keysSection(session);
    } catch (err) {
      keys = notice(`Could not load the keys: ${err.message}`, "error");
    }
    if (main.dataset.view !== "config") return () => {};  // the user moved on meanwhile
    main.append(keys);
  }
  markLoaded(main, "config");
  return () => {};
}

async function limits(resources, customer) {
  if (!customer) {
    resources.append(notice("This key sees no customers yet."));
  } else if (!(await available(`/api/config/customers/${enc(customer)}/resources`))) {
    resources.append(notice("Configuration is not available on this hub (it does not serve /api/config yet)."));
  } else {
    const list = h("div", { class: "config-grid" });
    resources.append(list);
    const reload = async () => {
      const items = await listing(`/api/config/customers/${enc(customer)}/resources`);
      fill(list, items.map((r) => resourceForm(customer, r, reload)));
    };
    await reload();
  }
}
