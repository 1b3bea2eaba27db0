// Who is signed in (GET /whoami), so views offer only what the token's role may do; the API
// refuses the rest anyway.
import { ROLE_RANK } from "./api.js";

let me = null;

export function signedIn() {
  return me;
}

export function setSignedIn(who) {
  me = who;
}

export function may(role) {
  return me !== null && (ROLE_RANK[me.role] ?? -1) >= ROLE_RANK[role];
}
