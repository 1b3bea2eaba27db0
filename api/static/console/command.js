// One command: its fields, its reply, its events as a timeline, the manual-analysis form when
// it awaits one, cancel while queued, and a plot of the same payload's numbers across history.
import { awaitsAnalysis, enc, get, isSettled, post, query } from "./api.js";
import { field, h, problemText, replace, shortId, when } from "./dom.js";
import { cancelButton } from "./history.js";
import { linePlot } from "./plot.js";
import { may } from "./session.js";
import { analysisNumber, payloadText, replyNumber, replyText } from "./values.js";

// History pages read for the plot: enough for a day of a measurement every few seconds.
const PLOT_PAGES = 10;
const PLOT_PAGE_SIZE = 500;

export async function showCommand(view, id) {
  let stopped = false;
  const render = async () => {
    const [command, events] = await Promise.all([
      get(`/commands/${enc(id)}`), get(`/commands/${enc(id)}/events`)]);
    if (stopped) return;
    const rows = [
      ["Device", h("a", { href: `#/device/${enc(command.device)}` }, command.device)],
      ["User", command.user], ["Kind", command.kind],
      ["Payload", h("code", {}, payloadText(command))],
      ["State", h("span", { class: `state-${command.state}`, id: "command-state" }, command.state)],
      ["Reply", h("pre", { id: "command-reply" }, replyText(command))],
      ["Analysis", command.analysis ? h("pre", { class: "json", id: "command-analysis" }, JSON.stringify(command.analysis, null, 2)) : "none"],
      ["Error", command.error || "—"], ["Attempts", command.attempts],
      ["Created", when(command.created_at)], ["Finished", when(command.finished_at)],
    ];
    replace(view,
      h("h2", {}, "Command ", shortId(command.id), " ", cancelButton(command, render)),
      h("table", {}, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))),
      awaitsAnalysis(command) && may("operator") ? analysisForm(command, render) : null,
      h("h3", {}, "Events"),
      h("ol", { class: "timeline", id: "timeline" }, events.items.map((e) => h("li", {},
        h("time", { datetime: e.at }, when(e.at)), h("strong", { class: `state-${e.state}` }, e.state), " ",
        typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail)))),
      h("h3", {}, "This payload across its history"),
      h("div", { id: "payload-plot" }, h("p", { class: "muted" }, "Reading history…")),
    );
    plotHistory(command).catch((e) => {
      const box = document.getElementById("payload-plot");
      if (box) replace(box, h("p", { class: "error" }, problemText(e)));
    });
    // While it is still moving, follow it with a long-poll rather than a timer.
    if (!isSettled(command)) {
      get(`/commands/${enc(id)}?wait=30`).then(() => { if (!stopped) render(); }).catch(() => {});
    }
  };
  await render();
  return () => { stopped = true; };
}

function analysisForm(command, after) {
  const verdict = h("select", { name: "ok" }, h("option", { value: "true" }, "pass"), h("option", { value: "false" }, "fail"));
  const value = h("input", { type: "text", name: "value", inputmode: "decimal" });
  const note = h("input", { type: "text", name: "note", size: "40" });
  const status = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "analysis-form" }, h("fieldset", {}, h("legend", {}, "Manual analysis"),
    field("Verdict", verdict), field("Measured value (optional)", value), field("Note", note),
    h("button", { type: "submit" }, "Record analysis"), status));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { ok: verdict.value === "true" };
    if (value.value.trim()) {
      const number = Number(value.value);
      if (!Number.isFinite(number)) { status.textContent = "The measured value must be a number."; return; }
      body.value = number;
    }
    if (note.value.trim()) body.note = note.value.trim();
    try {
      await post(`/commands/${enc(command.id)}/analysis`, { value: body });
      await after();
    } catch (e) {
      status.textContent = problemText(e);
    }
  });
  return form;
}

async function plotHistory(command) {
  const same = [];
  let cursor = null;
  const key = JSON.stringify(command.payload);
  for (let page = 0; page < PLOT_PAGES; page++) {
    const result = await get(`/commands${query({ device: command.device, limit: PLOT_PAGE_SIZE, cursor })}`);
    same.push(...result.items.filter((c) => c.kind === command.kind && JSON.stringify(c.payload) === key));
    cursor = result.next_cursor;
    if (!cursor) break;
  }
  const at = (c) => Date.parse(c.responded_at || c.finished_at || c.created_at);
  const replies = same.map((c) => ({ t: at(c), y: replyNumber(c) })).filter((p) => p.y !== null).reverse();
  const analyses = same.map((c) => ({ t: at(c), y: analysisNumber(c) })).filter((p) => p.y !== null).reverse();
  const box = document.getElementById("payload-plot");
  if (!box) return;
  replace(box,
    replies.length ? linePlot(replies, `Numeric replies to ${payloadText(command)}`) : h("p", { class: "muted" }, "No numeric replies to this payload."),
    analyses.length ? linePlot(analyses, `Analysis values of ${payloadText(command)}`) : null);
}
