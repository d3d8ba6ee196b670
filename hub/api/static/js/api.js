// The hub's REST API, called with the session cookie (and its CSRF token on a change).

let csrf = null;

export class ApiError extends Error {
  constructor(status, message, where) {
    super(message);
    this.status = status;
    this.where = where;
  }
}

/** Remember the session's CSRF token (from the login or GET /ui/session). */
export function useToken(token) {
  csrf = token;
}

function messageOf(body, status) {
  if (body && typeof body === "object") {
    // {"error","where"} today, RFC 9457 problem details ("detail", "title") later
    const first = Array.isArray(body.errors) && body.errors.length ? body.errors[0] : null;
    const field = first ? first.path || first.parameter || first.header || null : null;
    return [body.detail || body.error || body.title || `HTTP ${status}`, field || body.where || null];
  }
  return [`HTTP ${status}`, null];
}

/** Call ``path``; the decoded JSON, or ApiError naming what the hub refused. */
export async function api(path, { method = "GET", body = undefined, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") {
    if (csrf) init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (resp.status === 401) {
    location.assign("/ui/login?next=" + encodeURIComponent(location.hash || "#/overview"));
    throw new ApiError(401, "the session has ended; log in again", "session");
  }
  if (!resp.ok) {
    const [message, where] = messageOf(data, resp.status);
    throw new ApiError(resp.status, message, where);
  }
  return { data, etag: resp.headers.get("ETag") };
}

/** GET ``path``'s JSON. */
export async function get(path) {
  return (await api(path)).data;
}

/** The items of a listing, whether it answers a plain array or {"items", "next"} pages. */
export async function listing(path, { max = 500 } = {}) {
  const items = [];
  let url = path;
  for (;;) {
    const data = await get(url);
    if (Array.isArray(data)) return data;
    items.push(...(data.items || []));
    if (!data.next || items.length >= max) return items;
    url = path + (path.includes("?") ? "&" : "?") + "cursor=" + encodeURIComponent(data.next);
  }
}

/** Whether a route exists on this hub: a GET that is not 404 (or is 404 for a known object). */
export async function available(path) {
  try {
    await get(path);
    return true;
  } catch (err) {
    if (err.status === 404 || err.status === 405) return false;
    throw err;
  }
}

export const enc = encodeURIComponent;
