// Sign-in, the role the token has, and the views by location hash (#/devices, #/device/NAME,
// #/commands, #/command/ID, #/hosts, #/tokens).
import { ApiError, UNAUTHORIZED_EVENT, get, setToken, token } from "./api.js";
import { may, setSignedIn, signedIn } from "./session.js";
import { problemText, replace, h } from "./dom.js";
import { showDevices } from "./devices.js";
import { showTerminal } from "./terminal.js";
import { showHistory } from "./history.js";
import { showCommand } from "./command.js";
import { showHosts } from "./hosts.js";
import { showTokens } from "./tokens.js";

const $ = (id) => document.getElementById(id);
// Whatever the current view runs in the background (polls, streams), stopped on leaving it.
let stopView = () => {};

async function signIn(value) {
  setToken(value);
  let me;
  try {
    me = await get("/whoami");
  } catch (e) {
    setToken(null);
    const why = e instanceof ApiError && e.status === 401 ? "That token is not known." : problemText(e);
    throw new Error(why);
  }
  setSignedIn(me);
  $("who-name").textContent = me.name;
  $("who-role").textContent = me.role;
  $("nav-tokens").hidden = !may("admin");
  $("sign-in-view").hidden = true;
  for (const id of ["who", "nav", "view"]) $(id).hidden = false;
  route();
}

function signOut() {
  stopView();
  setToken(null);
  setSignedIn(null);
  for (const id of ["who", "nav", "view"]) $(id).hidden = true;
  replace($("view"));
  $("sign-in-view").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
}

const ROUTES = [
  [/^#\/devices$/, () => showDevices],
  [/^#\/device\/([^/]+)$/, (m) => (el) => showTerminal(el, decodeURIComponent(m[1]))],
  [/^#\/commands(?:\?(.*))?$/, (m) => (el) => showHistory(el, new URLSearchParams(m[1] || ""))],
  [/^#\/command\/([^/]+)$/, (m) => (el) => showCommand(el, decodeURIComponent(m[1]))],
  [/^#\/hosts$/, () => showHosts],
  [/^#\/tokens$/, () => showTokens],
];

function route() {
  if (signedIn() === null) return;
  stopView();
  stopView = () => {};
  const hash = location.hash || "#/devices";
  const view = $("view");
  for (const link of document.querySelectorAll("nav a")) {
    const here = hash.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, make] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      replace(view);
      Promise.resolve(make(match)(view))
        .then((stop) => {
          if (typeof stop === "function") stopView = stop;
          // A keyboard or screen-reader user starts at the new view's heading.
          const heading = view.querySelector("h2");
          if (heading && !view.contains(document.activeElement)) {
            heading.tabIndex = -1;
            heading.focus({ preventScroll: true });
          }
        })
        .catch((e) => view.append(h("p", { class: "error", role: "alert" }, problemText(e))));
      return;
    }
  }
  replace(view, h("p", {}, "No such page. ", h("a", { href: "#/devices" }, "Devices")));
}

// A request refused 401 after signing in means the token was revoked: back to sign-in.
window.addEventListener(UNAUTHORIZED_EVENT, () => {
  if (signedIn() === null) return;
  signOut();
  $("sign-in-error").textContent = "The API no longer accepts this token; sign in again.";
});

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    signIn($("token-input").value.trim()).catch((e) => {
      $("sign-in-error").textContent = problemText(e);
    });
  });
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  const kept = token();
  if (kept) signIn(kept).catch(() => signOut());
  else $("token-input").focus();
});
