// A device's terminal: its live stream (rx and tx told apart by colour and a marker), an input
// line that submits commands of the device's kinds and shows each reply, and a repeat control
// that plots a numeric reply over time.
import { enc, get, post, settle, streamUrl } from "./api.js";
import { field, h, problemText, replace, shortId } from "./dom.js";
import { presenceBadge } from "./devices.js";
import { linePlot } from "./plot.js";
import { may } from "./session.js";
import { base64Hex, replyNumber, replyText, typedBytes } from "./values.js";

// Lines the terminal keeps; older ones scroll away, so a chatty device cannot grow the page.
const MAX_LINES = 2000;
const PRESENCE_POLL_MS = 2000;
// Longest the terminal waits for one command's reply before it says it is still pending.
const REPLY_WAIT_S = 120;
const MARKERS = { rx: "←", tx: "→", presence: "•", command: "•", reply: "=", sent: "»", bad: "!" };

export async function showTerminal(view, name) {
  const device = await get(`/devices/${enc(name)}`);
  const badge = h("span", {}, presenceBadge(device));
  const out = h("div", { class: "terminal", role: "log", "aria-label": `Live output of ${name}`, tabindex: "0" });
  const streamStatus = h("span", { class: "muted", id: "stream-status" }, "connecting…");
  const stops = [];

  function print(kind, text, at, extra) {
    const line = h("span", { class: `line ${kind}`, "data-kind": kind },
      h("span", { class: "at" }, (at ? new Date(at) : new Date()).toLocaleTimeString()),
      h("span", { class: "marker", "aria-label": kind }, MARKERS[kind] || "•"),
      h("span", { class: "text" }, text), extra || null);
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.append(line);
    while (out.childElementCount > MAX_LINES) out.firstElementChild.remove();
    if (atBottom) out.scrollTop = out.scrollHeight;
    return line;
  }

  replace(view,
    h("h2", {}, "Device ", name, " ", badge),
    h("p", { class: "muted" }, `${device.transport}, codec ${device.codec}, address ${device.address || "—"} · `,
      h("a", { href: `#/commands?device=${enc(name)}` }, "history of this device"), " · stream: ", streamStatus),
    out,
    may("operator") ? inputLine(device, print) : h("p", { class: "muted" }, "Your role may watch; sending needs an operator token."),
    may("operator") ? repeatControl(device, (stop) => stops.push(stop)) : null,
  );

  const showPresence = (presence) => replace(badge, presenceBadge({ presence }));
  stops.push(openStream(name, print, streamStatus, showPresence));
  let stopped = false;
  let timer = null;
  // The stream's presence events show a change at once; the poll also covers a device whose
  // stream is unavailable.
  const pollPresence = async () => {
    try {
      const now = await get(`/devices/${enc(name)}`);
      if (!stopped) replace(badge, presenceBadge(now));
    } catch { /* shown again on the next poll */ }
    if (!stopped) timer = setTimeout(pollPresence, PRESENCE_POLL_MS);
  };
  timer = setTimeout(pollPresence, PRESENCE_POLL_MS);
  stops.push(() => { stopped = true; clearTimeout(timer); });
  return () => stops.forEach((stop) => stop());
}

function openStream(name, print, statusEl, showPresence) {
  const source = new EventSource(streamUrl(name));
  const chunk = (kind) => (event) => {
    const data = JSON.parse(event.data);
    // A chunk ending its line needs no blank line after it in the terminal.
    const text = typeof data.text === "string" ? data.text.replace(/\r?\n$/, "") : base64Hex(data.data || "");
    print(kind, text, data.at);
  };
  source.addEventListener("rx", chunk("rx"));
  source.addEventListener("tx", chunk("tx"));
  source.addEventListener("presence", (event) => {
    const data = JSON.parse(event.data);
    print("presence", `presence ${data.presence}`, data.at);
    if (data.presence) showPresence(data.presence);
  });
  source.addEventListener("command", (event) => {
    const data = JSON.parse(event.data);
    print("command", `command ${shortId(data.id)} ${data.state}`, data.at);
  });
  source.addEventListener("open", () => { statusEl.textContent = "live"; });
  source.addEventListener("error", () => {
    // EventSource retries by itself after a dropped connection; a refused one stays closed.
    statusEl.textContent = source.readyState === EventSource.CLOSED ? "unavailable" : "reconnecting…";
  });
  return () => source.close();
}

export function submission(device, kind, text) {
  if (kind === "frame") {
    const numbers = text.trim().split(/[\s,]+/).filter(Boolean).map(Number);
    if (!numbers.length || numbers.some((n) => !Number.isInteger(n))) {
      throw new Error("A frame is a command id and whole-number arguments: 7 1 2 3");
    }
    return { kind: "frame", payload: { command_id: numbers[0], args: numbers.slice(1) } };
  }
  if (kind === "raw") return { kind: "raw", payload: typedBytes(text) };
  // Written and not awaited: whatever the device answers shows on the stream only.
  if (kind === "raw-no-reply") return { kind: "raw", payload: typedBytes(text), read: null };
  return { kind: "line", payload: text };
}

function kindsOf(device) {
  return device.codec === "frame"
    ? [["frame", "frame: id args…"], ["raw", "raw bytes"]]
    : [["line", "line"], ["raw", "raw bytes (\\n \\xHH)"], ["raw-no-reply", "raw, no reply"]];
}

function inputLine(device, print) {
  const kinds = kindsOf(device);
  const kind = h("select", { name: "kind" }, kinds.map(([v, t]) => h("option", { value: v }, t)));
  const input = h("input", { type: "text", name: "command", autocomplete: "off", required: true,
    placeholder: device.codec === "frame" ? "7 1 2 3" : "*IDN?" });
  const form = h("form", { class: "term-input", id: "send-form" },
    field("Kind", kind), field("Command", input), h("button", { type: "submit", id: "send" }, "Send"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = submission(device, kind.value, input.value);
    } catch (e) {
      print("bad", problemText(e));
      return;
    }
    input.value = "";
    try {
      const command = await post(`/devices/${enc(device.name)}/commands`, body);
      const link = h("a", { href: `#/command/${enc(command.id)}` }, shortId(command.id));
      print("sent", `${body.kind} `, h("span", {}, command.payload && body.kind === "line" ? command.payload : JSON.stringify(body.payload), " (", link, ")"));
      const settled = await settle(command.id, REPLY_WAIT_S);
      const ok = settled.state === "done" || settled.state === "responded";
      print(ok ? "reply" : "bad", ok ? replyText(settled) : `${settled.state}${settled.error ? `: ${settled.error}` : ""}`,
        null, h("span", { class: "muted" }, ` [${settled.state}]`));
    } catch (e) {
      print("bad", problemText(e));
    }
  });
  return form;
}

function repeatControl(device, onStop) {
  const payload = h("input", { type: "text", name: "repeat-command", value: device.codec === "frame" ? "1" : "MEAS:VOLT?" });
  const every = h("input", { type: "number", name: "every", min: "0.2", step: "0.1", value: "1", size: "4" });
  const total = h("input", { type: "number", name: "for", min: "1", step: "1", value: "10", size: "4" });
  const button = h("button", { type: "submit" }, "Start");
  const status = h("p", { class: "muted", role: "status" });
  const plotBox = h("div", { id: "repeat-plot" });
  const kind = device.codec === "frame" ? "frame" : "line";
  let running = null;

  async function run() {
    const everyMs = Math.max(200, Number(every.value) * 1000);
    const until = Date.now() + Number(total.value) * 1000;
    const points = [];
    const state = { stopped: false };
    running = state;
    button.textContent = "Stop";
    while (!state.stopped && Date.now() < until) {
      const started = Date.now();
      try {
        const command = await post(`/devices/${enc(device.name)}/commands`, submission(device, kind, payload.value));
        const settled = await settle(command.id, 30);
        const y = replyNumber(settled);
        if (y !== null) points.push({ t: Date.parse(settled.responded_at || settled.finished_at) || Date.now(), y });
        status.textContent = `${points.length} numbers; last reply: ${replyText(settled)} [${settled.state}]`;
        replace(plotBox, linePlot(points, `${payload.value} on ${device.name}`));
      } catch (e) {
        status.textContent = problemText(e);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - (Date.now() - started))));
    }
    if (running === state) running = null;
    button.textContent = "Start";
  }

  const form = h("form", { id: "repeat-form" },
    h("fieldset", {}, h("legend", {}, "Repeat and plot"),
      field("Repeated command", payload), field("every (s)", every), field("for (s)", total), button, status, plotBox));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (running) running.stopped = true;
    else run();
  });
  onStop(() => { if (running) running.stopped = true; });
  return form;
}
