// Host agents and the serial ports each one sees.
import { ApiError, enc, get } from "./api.js";
import { h, problemText, replace, when } from "./dom.js";

const PORT_COLUMNS = ["path", "by_id", "description", "vid", "pid", "serial_number", "manufacturer", "product", "device"];

export async function showHosts(view) {
  replace(view, h("h2", {}, "Hosts"));
  let hosts;
  try {
    ({ items: hosts } = await get("/hosts"));
  } catch (e) {
    const why = e instanceof ApiError && e.status === 404 ? "This API does not list hosts." : problemText(e);
    view.append(h("p", { class: "error", role: "alert" }, why));
    return;
  }
  if (!hosts.length) view.append(h("p", { class: "muted" }, "No host agent has announced itself."));
  for (const host of hosts) {
    const ports = h("div", {}, h("p", { class: "muted" }, "Reading ports…"));
    view.append(h("section", { "data-host": host.name },
      h("h3", {}, host.name, " ", h("span", { class: `badge presence-${host.online ? "online" : "offline"}` },
        host.online ? "online" : "offline")),
      h("p", {}, `Last seen ${when(host.last_seen)}. Devices: `,
        host.devices.length ? host.devices.map((d, i) => [i ? ", " : "", h("a", { href: `#/device/${enc(d)}` }, d)]) : "none"),
      ports));
    get(`/hosts/${enc(host.name)}/ports`).then(({ items }) => replace(ports, items.length
      ? h("table", {}, h("thead", {}, h("tr", {}, PORT_COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, items.map((p) => h("tr", {}, PORT_COLUMNS.map((c) => h("td", {},
          c === "device" && p.device ? h("a", { href: `#/device/${enc(p.device)}` }, p.device) : p[c] ?? "—"))))))
      : h("p", { class: "muted" }, "No serial ports seen.")))
      .catch((e) => replace(ports, h("p", { class: "error" }, problemText(e))));
  }
}
