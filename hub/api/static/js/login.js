// The login page: an API key in, a session cookie back, then the dashboard.
const form = document.getElementById("login");
const input = document.getElementById("key");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.textContent = "";
  const key = input.value.trim();
  if (!key) {
    error.textContent = "Enter an API key.";
    input.focus();
    return;
  }
  const resp = await fetch("/ui/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ key }),
    credentials: "same-origin",
  });
  if (resp.ok) {
    const next = new URLSearchParams(location.search).get("next") || "";
    location.assign("/" + (next.startsWith("#/") ? next : ""));
    return;
  }
  let message = `The hub answered ${resp.status}.`;
  try {
    const body = await resp.json();
    message = body.error || body.detail || message;
  } catch {
    // keep the status
  }
  error.textContent = `Not logged in: ${message}`;
  input.setAttribute("aria-invalid", "true");
  input.focus();
});
input.focus();
