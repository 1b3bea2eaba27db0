// Command history, newest first, filtered by device and state, paged by cursor.
import { STATES, enc, get, post, query } from "./api.js";
import { field, h, problemText, replace, shortId, when } from "./dom.js";
import { may } from "./session.js";
import { payloadText, replyText } from "./values.js";

const PAGE_SIZE = 20;

export function cancelButton(command, after) {
  if (!may("operator") || command.state !== "queued") return null;
  const button = h("button", { type: "button", class: "cancel", "data-command": command.id }, "Cancel");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await post(`/commands/${enc(command.id)}/cancel`);
    } catch (e) {
      button.replaceWith(h("span", { class: "error", role: "alert" }, `Not cancelled: ${problemText(e)}`));
      return;
    }
    await after();
  });
  return button;
}

export async function showHistory(view, params) {
  const device = h("select", { name: "device" }, h("option", { value: "" }, "any"));
  const state = h("select", { name: "state" }, h("option", { value: "" }, "any"),
    STATES.map((s) => h("option", { value: s }, s)));
  const body = h("tbody");
  const pageInfo = h("span", { class: "muted", role: "status" });
  const prev = h("button", { type: "button", id: "prev-page" }, "Previous page");
  const next = h("button", { type: "button", id: "next-page" }, "Next page");
  const status = h("p", { class: "error", role: "alert" });
  // Cursors of the pages before this one: the first page has none.
  const cursors = [null];

  const form = h("form", { class: "controls", id: "history-filters" },
    field("Device", device), field("State", state), h("button", { type: "submit" }, "Show"));
  replace(view, h("h2", {}, "History"), form,
    h("table", {}, h("thead", {}, h("tr", {}, ["Created", "Command", "Device", "Payload", "State", "Reply", ""]
      .map((t) => h("th", { scope: "col" }, t)))), body),
    h("p", { class: "controls" }, prev, " ", next, " ", pageInfo), status);

  const { items: devices } = await get("/devices");
  for (const d of devices) device.append(h("option", { value: d.name }, d.name));
  device.value = params.get("device") || "";
  state.value = params.get("state") || "";

  async function load() {
    status.textContent = "";
    const cursor = cursors[cursors.length - 1];
    try {
      const page = await get(`/commands${query({ device: device.value, state: state.value, limit: PAGE_SIZE, cursor })}`);
      replace(body, page.items.map((c) => h("tr", { "data-command": c.id },
        h("td", {}, when(c.created_at)),
        h("td", {}, h("a", { href: `#/command/${enc(c.id)}` }, shortId(c.id))),
        h("td", {}, c.device), h("td", {}, h("code", {}, payloadText(c))),
        h("td", { class: `state-${c.state}` }, c.state), h("td", {}, replyText(c)),
        h("td", {}, cancelButton(c, load)))));
      if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No commands.")));
      next.disabled = !page.next_cursor;
      next.dataset.cursor = page.next_cursor || "";
      prev.disabled = cursors.length === 1;
      pageInfo.textContent = `page ${cursors.length}`;
    } catch (e) {
      status.textContent = problemText(e);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    // The filters go in the address, so a filtered history can be bookmarked (no token in it).
    const target = `#/commands${query({ device: device.value, state: state.value })}`;
    if (location.hash !== target) location.hash = target;
    else { cursors.length = 1; load(); }
  });
  next.addEventListener("click", () => { cursors.push(next.dataset.cursor); load(); });
  prev.addEventListener("click", () => { if (cursors.length > 1) cursors.pop(); load(); });
  await load();
}
