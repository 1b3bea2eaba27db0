// Tokens (admin): list and revoke. A new token is made on the command line, where its secret
// is printed once; the page composes that command.
import { enc, get, request } from "./api.js";
import { field, h, problemText, replace, when } from "./dom.js";
import { may } from "./session.js";

export async function showTokens(view) {
  // The page is not linked for other roles; one who types its address is told, not offered it.
  if (!may("admin")) {
    replace(view, h("h2", {}, "Tokens"), h("p", { class: "muted", id: "tokens-admin-only" }, "Only an admin may list and revoke tokens."));
    return;
  }
  const body = h("tbody");
  const status = h("p", { class: "error", role: "alert" });
  const role = h("select", { name: "role" }, ["viewer", "operator", "admin", "device"].map((r) => h("option", { value: r }, r)));
  const name = h("input", { type: "text", name: "name", value: "alice" });
  const device = h("input", { type: "text", name: "device", placeholder: "only for a device token" });
  const command = h("code", { class: "cli", id: "create-command" });
  const compose = () => {
    const quote = (s) => (/^[\w.@-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);
    command.textContent = `hwq token create --role ${role.value} --name ${quote(name.value || "NAME")}` +
      (role.value === "device" ? ` --device ${quote(device.value || "DEVICE")}` : "");
  };
  for (const input of [role, name, device]) input.addEventListener("input", compose);
  compose();

  async function load() {
    const { items } = await get("/tokens");
    replace(body, items.map((t) => {
      const revoke = h("button", { type: "button", class: "revoke", "data-token": t.id, "aria-label": `Revoke ${t.name}` }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!window.confirm(`Revoke the token ${t.name} (${t.role})? Anyone using it is refused at once.`)) return;
        try {
          await request("DELETE", `/tokens/${enc(t.id)}`);
          await load();
        } catch (e) {
          status.textContent = problemText(e);
        }
      });
      return h("tr", { "data-token": t.id }, h("td", {}, t.id), h("th", { scope: "row" }, t.name), h("td", {}, t.role),
        h("td", {}, t.device || "—"), h("td", {}, when(t.created_at)), h("td", {}, when(t.last_used_at)), h("td", {}, revoke));
    }));
  }

  replace(view, h("h2", {}, "Tokens"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Name", "Role", "Device", "Created", "Last used", ""]
      .map((t) => h("th", { scope: "col" }, t)))), body), status,
    h("h3", {}, "Create a token"),
    h("p", {}, "Tokens are created on the command line, where the secret is printed once:"),
    h("p", { class: "controls" }, field("Role", role), field("Name", name), field("Device", device)),
    h("p", {}, command));
  await load();
}
