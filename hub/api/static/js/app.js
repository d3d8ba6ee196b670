// The dashboard: who is logged in, the customer picker, the views behind #/<name>.
import { api, get, useToken } from "./api.js";
import { fill, notice } from "./dom.js";
import { Live } from "./live.js";

const VIEWS = {
  overview: () => import("./views/overview.js"),
  chart: () => import("./views/chart.js"),
  alerts: () => import("./views/alerts.js"),
  costs: () => import("./views/costs.js"),
  recommendations: () => import("./views/recommendations.js"),
  config: () => import("./views/config.js"),
};
const TITLES = {
  overview: "Overview", chart: "Usage chart", alerts: "Alerts", costs: "Costs",
  recommendations: "Recommendations", config: "Configuration",
};
const MODES = { stream: "● Live", poll: "◌ Polling every 2 s", starting: "…" };

const main = document.getElementById("main");
const picker = document.getElementById("customer");
let session = null;
let cleanup = () => {};
let live = null;
let generation = 0;

function route() {
  const [path, query] = (location.hash || "#/overview").slice(2).split("?");
  return { name: VIEWS[path] ? path : "overview", params: new URLSearchParams(query || "") };
}

async function show() {
  const { name, params } = route();
  const mine = ++generation;
  cleanup();
  cleanup = () => {};
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${TITLES[name]} — resmon`;
  delete main.dataset.loaded;
  main.dataset.view = name;
  fill(main, notice("Loading…"));
  try {
    const view = await VIEWS[name]();
    if (mine !== generation) return;
    const stop = await view.render({ main, session, customer: picker.value || null, live, params });
    if (mine !== generation) return stop();
    cleanup = stop;
    const heading = main.querySelector("h1");
    if (heading && document.activeElement !== document.body && !main.contains(document.activeElement)) heading.focus();
  } catch (err) {
    fill(main, notice(`This view failed: ${err.message}`, "error"));
  }
}

async function alertBadge() {
  try {
    const data = await get("/api/alerts?status=ACTIVE&limit=500");
    const n = (Array.isArray(data) ? data : data.items || []).length;
    const badge = document.getElementById("alert-badge");
    badge.hidden = n === 0;
    badge.textContent = String(n);
    badge.setAttribute("aria-label", `${n} active`);
  } catch {
    // the badge is a hint; the alerts view says what failed
  }
}

async function start() {
  try {
    session = await get("/ui/session");
  } catch (err) {
    if (err.status !== 401) fill(main, notice(`Could not reach the hub: ${err.message}`, "error"));
    return;
  }
  useToken(session.csrfToken);
  document.getElementById("key-name").textContent = `${session.keyName}${session.restricted ? " (customer key)" : ""}`;
  fill(picker, ...session.customers.map((c) => new Option(c, c)));
  const saved = sessionStorage.getItem("resmon.customer");
  if (saved && session.customers.includes(saved)) picker.value = saved;
  picker.disabled = session.customers.length <= 1;
  picker.addEventListener("change", () => {
    sessionStorage.setItem("resmon.customer", picker.value);
    live.start(session.restricted ? picker.value : null);
    show();
  });
  const mode = document.getElementById("live-mode");
  live = new Live((m) => {
    mode.textContent = MODES[m] || m;
    document.body.dataset.live = m;
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/ui/logout", { method: "POST" }).catch(() => null);
    location.assign("/ui/login");
  });
  window.addEventListener("hashchange", show);
  await show();
  // after the first view is drawn: the live updates and the alert count
  live.subscribe(["alert"], alertBadge);
  live.start(session.restricted && session.customers.length === 1 ? session.customers[0] : null);
  alertBadge();
}

start();
