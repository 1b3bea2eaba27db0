// The public HTTP API, with the token the user signed in with (kept in sessionStorage only:
// gone when the tab closes, never in a URL the page shows or a link someone could copy).

const TOKEN_KEY = "hwq.token";
export const BASE = "/api/v1";

export const UNAUTHORIZED_EVENT = "hwq-unauthorized";

export const ROLE_RANK = { device: 0, viewer: 1, operator: 2, admin: 3 };

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (e) {
    throw new ApiError(0, { detail: `The API cannot be reached (${e.message}).` });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (response.status === 401) {
    // The token was revoked, or the API forgot it: whoever is signed in must sign in again.
    window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT));
  }
  if (!response.ok) {
    const problem = data || {};
    if (Array.isArray(problem.errors) && problem.errors.length) {
      problem.detail = problem.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    }
    throw new ApiError(response.status, problem);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

export function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
}

export const enc = encodeURIComponent;

// Long-polls a command until it settles (terminal, or responded and awaiting a manual
// analysis), or until `seconds` have passed.
export async function settle(id, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const left = Math.max(1, Math.min(30, Math.round((deadline - Date.now()) / 1000)));
    const command = await get(`/commands/${enc(id)}?wait=${left}`);
    if (isSettled(command) || Date.now() >= deadline) return command;
  }
}

export const TERMINAL = ["done", "failed", "timed_out", "expired", "cancelled", "interrupted"];
export const STATES = ["queued", "dispatched", "responded", ...TERMINAL];

export function isSettled(command) {
  return TERMINAL.includes(command.state) || awaitsAnalysis(command);
}

export function awaitsAnalysis(command) {
  return command.state === "responded" && command.analysis && command.analysis.analyzer === "manual";
}

// The device's live stream as EventSource: browsers cannot set its headers, so the token
// goes in the query, as the stream route allows.
export function streamUrl(device) {
  return `${BASE}/devices/${enc(device)}/stream?token=${enc(token())}`;
}
