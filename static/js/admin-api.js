// JSON calls to the admin API with the page's CSRF token; errors carry the server's `detail`.

export const ADMIN_API = "/api/v1/admin";

export class AdminApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** fetch + JSON; throws AdminApiError with the server's detail on a non-2xx answer. */
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new AdminApiError(0, `the server cannot be reached (${error.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `the server answered ${response.status}`;
    throw new AdminApiError(response.status, detail);
  }
  return data;
}

/** Seconds as "1 h 05 min", "3 min 20 s" or "12 s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

export function pageData() {
  const element = document.getElementById("page-data");
  return element ? JSON.parse(element.textContent) : {};
}
