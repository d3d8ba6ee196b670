// Numbers and times as people read them. Decimal strings from the API stay strings
// until shown; money is never added up here (the hub sends the totals).

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** A decimal string or number for display, at most two decimals. */
export function num(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  return Number.isFinite(n) ? nf.format(n) : String(value);
}

/** An amount with its currency, as the hub rounded it. */
export function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  return `${amount} ${currency || ""}`.trim();
}

/** "5 min ago" style, with the full time for a title attribute. */
export function ago(when) {
  if (when === null || when === undefined) return "never";
  const t = typeof when === "number" ? when : Date.parse(when);
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

export function when(value) {
  if (value === null || value === undefined) return "—";
  const t = typeof value === "number" ? value : Date.parse(value);
  return new Date(t).toLocaleString();
}

/** The resource part of a key: "cust-1/bandwidth/wan1" -> "bandwidth/wan1". */
export function shortKey(resourceKey, customerId) {
  const prefix = `${customerId}/`;
  return resourceKey.startsWith(prefix) ? resourceKey.slice(prefix.length) : resourceKey;
}

/** The level a percentage of the limit is at, given the thresholds (percent). */
export function levelOf(percentage, warning, critical) {
  if (percentage === null || percentage === undefined) return "none";
  const p = Number(percentage);
  if (p >= Number(critical)) return "critical";
  if (p >= Number(warning)) return "warning";
  return "ok";
}
