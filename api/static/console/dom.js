// Small DOM helpers: elements are built as nodes, never from HTML strings, so text from the
// API or a device can never become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A label and its control, tied by id so screen readers and clicks reach the control.
let nextId = 0;
export function field(labelText, control) {
  if (!control.id) control.id = `f${++nextId}`;
  return h("span", { class: "field" }, h("label", { for: control.id }, labelText), control);
}

export function problemText(error) {
  return error && error.message ? error.message : String(error);
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}
