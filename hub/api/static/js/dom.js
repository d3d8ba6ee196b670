// Building the page without innerHTML: every text from the API goes in as text.

/** An element: h("td", {class: "num"}, "12", child, ...). on* attributes are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside ``el``. */
/** Mark ``main`` loaded for ``view``, unless the user has moved on to another view:
 * a view that finishes after a navigation must not say the next one is ready. */
export function markLoaded(main, view) {
  if (main.dataset.view === view) main.dataset.loaded = "true";
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Say ``text`` to screen readers (and show it in the status line). */
export function announce(text) {
  const region = document.getElementById("status");
  if (region) region.textContent = text;
}

/** A panel saying why something cannot be shown. */
export function notice(text, kind = "info") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : null }, text);
}

/** A modal confirmation: resolves true when confirmed. ``body`` says what will change. */
export function confirmDialog({ title, body, confirm, extra = null }) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "submit", class: "primary", value: "ok" }, confirm);
    const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
    const heading = h("h2", { id: "dialog-title" }, title);
    const form = h("form", { method: "dialog" }, heading, h("div", { id: "dialog-body" }, body), extra,
      h("div", { class: "actions" }, cancel, ok));
    const dialog = h("dialog", { "aria-labelledby": "dialog-title", "aria-describedby": "dialog-body" }, form);
    cancel.addEventListener("click", () => dialog.close("cancel"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    (extra && extra.querySelector("input, textarea, select") || ok).focus();
  });
}

/** ``fn`` run one at a time; a call during a run runs it once more after (and waits for that). */
export function serialized(fn) {
  let running = null;
  let again = null;
  const run = async (...args) => {
    if (running) {
      if (!again) again = running.then(() => { again = null; return run(...args); });
      return again;
    }
    running = (async () => fn(...args))();
    try {
      return await running;
    } finally {
      running = null;
    }
  };
  return run;
}
