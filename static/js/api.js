// Calls to the SynTumor REST API from the pages: the session cookie goes along, and every
// state-changing call carries the page's CSRF token in the X-CSRF-Token header.

export const API = "/api/v1";

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** An error with the server's `detail` (a sentence a person can act on) and the HTTP status. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function describe(status, body, fallback) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg || String(d)).join("; ");
  if (status === 413) return "the file is larger than the server accepts";
  return fallback || `the server answered ${status}`;
}

async function parse(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** fetch + JSON; throws ApiError with the server's detail on a non-2xx answer. */
export async function request(method, path, body) {
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
    throw new ApiError(0, `the server cannot be reached (${error.message})`);
  }
  const data = await parse(response);
  if (!response.ok) throw new ApiError(response.status, describe(response.status, data, response.statusText));
  return data;
}

export const getJSON = (path) => request("GET", path);
export const postJSON = (path, body) => request("POST", path, body ?? {});

/**
 * Upload a file as the raw request body (what the volumes API takes), reporting progress.
 * @param {string} url - the upload URL with its query (?name=…&kind=…)
 * @param {File} file
 * @param {(fraction: number) => void} onProgress - 0…1 of the bytes sent
 * @returns {Promise<{status: number, body: any}>}
 */
export function uploadFile(url, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve({ status: xhr.status, body });
      else reject(new ApiError(xhr.status, describe(xhr.status, body, xhr.statusText)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload was interrupted: the server cannot be reached")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "the upload was cancelled")));
    xhr.send(file);
  });
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

/**
 * Follow a job until it finishes: server-sent events, or polling where they fail.
 * @param {number} jobId
 * @param {(job: object) => void} onProgress - called with the job JSON on every change
 * @returns {Promise<object>} the finished job
 */
export function followJob(jobId, onProgress) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (job) => {
      if (done) return;
      done = true;
      onProgress(job);
      resolve(job);
    };
    const poll = async () => {
      while (!done) {
        try {
          const job = await getJSON(`${API}/jobs/${jobId}`);
          if (FINISHED.has(job.status)) finish(job);
          else onProgress(job);
        } catch (error) {
          if (error.status && error.status < 500) {
            done = true;
            reject(error);
            return;
          }
        }
        await new Promise((wake) => setTimeout(wake, 1000));
      }
    };
    if (typeof EventSource === "undefined") {
      poll();
      return;
    }
    const source = new EventSource(`${API}/jobs/${jobId}/events`);
    source.addEventListener("progress", (event) => {
      const job = JSON.parse(event.data);
      if (FINISHED.has(job.status)) {
        source.close();
        finish(job);
      } else {
        onProgress(job);
      }
    });
    source.addEventListener("end", (event) => {
      source.close();
      finish(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      // The stream ended without an `end` (time limit, network): go on by polling.
      source.close();
      if (!done) poll();
    });
  });
}

export function isFinished(status) {
  return FINISHED.has(status);
}
