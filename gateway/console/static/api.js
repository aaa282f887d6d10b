// The admin API with the signed-in token. Errors carry the gateway's own bilingual message.
import { language } from "./i18n.js";

const KEY = "shuhi.token";

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(value) { if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY); }

// The gateway's messages read "日本語 / English": show the half in the console's language.
function localized(message) {
  const halves = String(message).split(" / ");
  if (halves.length !== 2) return String(message);
  return language() === "ja" ? halves[0] : halves[1];
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && (body.error || body)) || {};
    super(error.message ? localized(error.message) : `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
  }
}

function headers(extra = {}) { return { Authorization: `Bearer ${token()}`, ...extra }; }

async function parse(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text.slice(0, 200) }; }
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("shuhi:signed-out"));
    throw new ApiError(response.status, body);
  }
  return body;
}

export async function call(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return parse(await fetch(path, init));
}

export const get = (path, params) => call("GET", withQuery(path, params));
export const post = (path, body) => call("POST", path, body ?? {});
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

export function withQuery(path, params) {
  if (!params) return path;
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const s = query.toString();
  return s ? `${path}?${s}` : path;
}

// Every page of a list endpoint (the console's lists are small: agreements, principals, items).
export async function all(path, params = {}) {
  const out = [];
  let cursor = null;
  do {
    const page = await get(path, { ...params, limit: 1000, cursor });
    out.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

// Multipart upload with progress (fetch cannot report upload progress; XMLHttpRequest can).
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) { onProgress(1); resolve(body); } else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { message: "network error" })));
    xhr.send(form);
  });
}

// A download (export, printable certificate) fetched with the token, as a Blob.
export async function blob(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) await parse(response);
  const disposition = response.headers.get("content-disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "download";
  return { blob: await response.blob(), name };
}
