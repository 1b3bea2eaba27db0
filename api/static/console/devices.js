// The devices and their presence, polled every 2 s; admins may activate, deactivate, rename.
import { enc, get, post, request } from "./api.js";
import { field, h, problemText, replace, when } from "./dom.js";
import { may } from "./session.js";

const POLL_MS = 2000;
export const LIST_SHOWN_MARK = "hwq-device-list-shown";
const STATE_NAMES = ["rest", "requested", "collected", "responded"];

// Before the registry knew presence, `online` alone said it.
export function presenceOf(device) {
  return device.presence || (device.online ? "online" : "offline");
}

export function presenceBadge(device) {
  const presence = presenceOf(device);
  return h("span", { class: `badge presence-${presence}`, "data-presence": presence }, presence);
}

export function showDevices(view) {
  const status = h("p", { class: "error", role: "alert" });
  const body = h("tbody");
  const admin = may("admin");
  const rows = new Map();
  const renameFrom = h("select", { name: "from" });
  const renameTo = h("input", { name: "to", type: "text", required: true, pattern: "[a-z0-9][a-z0-9_\\-]{0,62}" });
  replace(view,
    h("h2", {}, "Devices"),
    h("table", {},
      h("thead", {}, h("tr", {}, ["Device", "Presence", "Codec", "Host", "State", "Queued",
        "Last seen", admin ? "Connection" : null].filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
      body),
    status,
    admin ? h("form", { class: "controls", id: "rename-form", onsubmit: rename },
      h("h3", {}, "Rename a device"),
      field("Device", renameFrom), field("New name", renameTo),
      h("button", { type: "submit" }, "Rename")) : null,
  );

  async function rename(event) {
    event.preventDefault();
    status.textContent = "";
    try {
      await request("PATCH", `/devices/${enc(renameFrom.value)}`, { name: renameTo.value });
      renameTo.value = "";
      await refresh();
    } catch (e) {
      status.textContent = `Rename failed: ${problemText(e)}`;
    }
  }

  async function connection(name, action) {
    status.textContent = "";
    try {
      await post(`/devices/${enc(name)}/${action}`);
      await refresh();
    } catch (e) {
      status.textContent = `${action} ${name} failed: ${problemText(e)}`;
    }
  }

  function row(device) {
    const cells = {
      presence: h("td"), codec: h("td"), host: h("td"), state: h("td"), queued: h("td"), seen: h("td"),
    };
    const tr = h("tr", { "data-device": device.name },
      h("th", { scope: "row" }, h("a", { href: `#/device/${enc(device.name)}` }, device.name)),
      cells.presence, cells.codec, cells.host, cells.state, cells.queued, cells.seen,
      admin ? h("td", {},
        // Each button names its device, for a screen reader moving from button to button.
        h("button", { type: "button", class: "activate", "aria-label": `Activate ${device.name}`, onclick: () => connection(device.name, "activate") }, "Activate"), " ",
        h("button", { type: "button", class: "deactivate", "aria-label": `Deactivate ${device.name}`, onclick: () => connection(device.name, "deactivate") }, "Deactivate"),
      ) : null);
    return { tr, cells };
  }

  // Cells are updated in place, so focus and a half-typed rename survive each poll.
  function render(devices) {
    const seen = new Set();
    for (const device of devices) {
      seen.add(device.name);
      let entry = rows.get(device.name);
      if (!entry) {
        entry = row(device);
        rows.set(device.name, entry);
      }
      body.append(entry.tr);
      replace(entry.cells.presence, presenceBadge(device), device.error ? h("div", { class: "muted" }, device.error) : null);
      entry.cells.codec.textContent = device.codec;
      entry.cells.host.textContent = device.host || "—";
      entry.cells.state.textContent = STATE_NAMES[device.state] || device.state;
      entry.cells.queued.textContent = device.queue_depth;
      entry.cells.seen.textContent = when(device.last_seen);
    }
    for (const [name, entry] of rows) {
      if (!seen.has(name)) { entry.tr.remove(); rows.delete(name); }
    }
    if (admin) {
      const chosen = renameFrom.value;
      const names = devices.map((d) => d.name);
      if (names.join() !== Array.from(renameFrom.options, (o) => o.value).join()) {
        replace(renameFrom, names.map((n) => h("option", { value: n }, n)));
        if (names.includes(chosen)) renameFrom.value = chosen;
      }
    }
    if (!devices.length) status.textContent = "No devices are registered.";
    // User Timing, so the time to the first list can be measured (bench/console_load.py).
    else if (!performance.getEntriesByName(LIST_SHOWN_MARK).length) performance.mark(LIST_SHOWN_MARK);
  }

  async function refresh() {
    const { items } = await get("/devices");
    render(items);
  }

  let stopped = false;
  let timer = null;
  const poll = async () => {
    try {
      await refresh();
      if (status.textContent.startsWith("Cannot list")) status.textContent = "";
    } catch (e) {
      status.textContent = `Cannot list devices: ${problemText(e)}`;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  };
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
