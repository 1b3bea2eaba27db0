"""The interactive API page: plain HTML and JavaScript, no CDN, driven by openapi.json."""

# A Python string rather than a template file, so it ships with the package as it is.
# `{{nonce}}` is replaced per response; everything the page shows goes in by textContent.
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hwq API</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem;
         padding: 0 1rem; color: #222; }
  header { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
  h1 { font-size: 1.4rem; margin: 0; }
  h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; text-transform: capitalize; }
  details { border: 1px solid #ccc; border-radius: 4px; margin: .4rem 0; padding: .3rem .6rem; }
  summary { cursor: pointer; }
  .method { display: inline-block; width: 4.5rem; font-weight: 600; font-family: monospace; }
  .path { font-family: monospace; }
  .role { color: #666; font-size: .85rem; margin-left: .5rem; }
  label { display: block; margin: .4rem 0; }
  label span { display: inline-block; min-width: 8rem; font-family: monospace; }
  textarea { width: 100%; min-height: 6rem; font-family: monospace; }
  pre { background: #f5f5f5; padding: .5rem; overflow: auto; max-height: 24rem; }
  #error { color: #a00; }
</style>
</head>
<body>
<header>
  <h1>hwq API</h1>
  <label><span>Bearer token</span>
    <input id="token" type="password" size="48" autocomplete="off"></label>
</header>
<p id="error"></p>
<main id="operations">Loading openapi.json&hellip;</main>
<script nonce="{{nonce}}">
"use strict";
let spec = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child);
  }
  return node;
}

function resolve(schema) {
  while (schema && schema.$ref) {
    schema = schema.$ref.split("/").slice(1).reduce((node, key) => node[key], spec);
  }
  return schema || {};
}

// A starting body: the required fields, filled with defaults or harmless values.
function example(schema, depth) {
  schema = resolve(schema);
  if (depth > 6) return null;
  if ("default" in schema) return schema.default;
  if ("const" in schema) return schema.const;
  if (schema.enum) return schema.enum[0];
  if (schema.oneOf) return example(schema.oneOf[0], depth + 1);
  if (schema.anyOf) {
    return example(schema.anyOf.find((s) => s.type !== "null") || schema.anyOf[0], depth + 1);
  }
  switch (schema.type) {
    case "object": {
      const value = {};
      for (const key of schema.required || []) {
        value[key] = example(schema.properties[key], depth + 1);
      }
      return value;
    }
    case "array": return [];
    case "integer": case "number": return schema.minimum ?? 0;
    case "boolean": return false;
    case "string": return "";
    default: return null;
  }
}

function showResponse(output, response, text) {
  let body = text;
  try { body = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
  const location = response.headers.get("Location");
  output.textContent = response.status + " " + response.statusText +
    (location ? "\\nLocation: " + location : "") + (body ? "\\n\\n" + body : "");
}

async function send(method, path, operation, inputs, bodyField, output) {
  let url = path;
  const query = new URLSearchParams();
  for (const [parameter, input] of inputs) {
    if (parameter.in === "path") {
      url = url.replace("{" + parameter.name + "}", encodeURIComponent(input.value));
    } else if (input.value !== "") {
      query.set(parameter.name, input.value);
    }
  }
  if (query.toString()) url += "?" + query;
  const headers = {};
  const token = document.getElementById("token").value.trim();
  if (token && (operation.security || []).length) headers.Authorization = "Bearer " + token;
  const init = { method: method.toUpperCase(), headers };
  if (bodyField) {
    headers["Content-Type"] = "application/json";
    init.body = bodyField.value;
  }
  output.textContent = init.method + " " + url + " …";
  try {
    const response = await fetch(url, init);
    showResponse(output, response, await response.text());
  } catch (e) {
    output.textContent = "Request failed: " + e;
  }
}

function renderOperation(method, path, operation) {
  const role = operation["x-hwq-role"];
  const summary = el("summary", {},
    el("span", { className: "method", textContent: method.toUpperCase() }),
    el("span", { className: "path", textContent: path }),
    " — " + (operation.summary || ""),
    el("span", { className: "role", textContent: role ? "(" + role + ")" : "(no token)" }));
  const form = el("form");
  const inputs = [];
  for (const parameter of operation.parameters || []) {
    const schema = resolve(parameter.schema);
    const input = el("input", { name: parameter.name, required: parameter.required });
    input.placeholder = schema.default !== undefined ? String(schema.default) : parameter.in;
    inputs.push([parameter, input]);
    form.append(el("label", { title: parameter.description || "" },
      el("span", { textContent: parameter.name }), input));
  }
  let bodyField = null;
  const content = operation.requestBody && operation.requestBody.content["application/json"];
  if (content) {
    bodyField = el("textarea", { spellcheck: false });
    bodyField.value = JSON.stringify(example(content.schema, 0), null, 2);
    form.append(el("label", {}, el("span", { textContent: "body (JSON)" })), bodyField);
  }
  const output = el("pre", { textContent: "" });
  form.append(el("button", { type: "submit", textContent: "Send" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(method, path, operation, inputs, bodyField, output);
  });
  return el("details", {}, summary, form, output);
}

async function load() {
  const main = document.getElementById("operations");
  try {
    const response = await fetch("openapi.json");
    spec = await response.json();
  } catch (e) {
    document.getElementById("error").textContent = "Could not load openapi.json: " + e;
    return;
  }
  main.textContent = "";
  const byTag = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const tag = (operation.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(renderOperation(method, path, operation));
    }
  }
  for (const [tag, operations] of byTag) {
    main.append(el("h2", { textContent: tag }), ...operations);
  }
}

load();
</script>
</body>
</html>
"""
