// What a command said and what number, if any, it measured.

export function bytesToText(base64) {
  try {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

export function base64Hex(base64) {
  try {
    return Array.from(atob(base64), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join(" ");
  } catch {
    return base64;
  }
}

export function payloadText(command) {
  const payload = command.payload;
  if (command.kind === "frame" && payload && typeof payload === "object") {
    return [payload.command_id, ...(payload.args || [])].join(" ");
  }
  if (command.kind === "raw" && typeof payload === "string") {
    const text = bytesToText(payload);
    return text === null ? base64Hex(payload) : JSON.stringify(text);
  }
  return typeof payload === "string" ? payload : JSON.stringify(payload);
}

export function replyText(command) {
  const response = command.response;
  if (!response) return command.error ? `(${command.error})` : "";
  if (typeof response.text === "string") return response.text;
  if (typeof response.data === "string") {
    const text = bytesToText(response.data);
    return text === null ? base64Hex(response.data) : text;
  }
  if (Array.isArray(response.values)) return `status ${response.status}: ${response.values.join(" ")}`;
  if ("exit_code" in response) return `${response.stdout || ""}${response.stderr || ""}[exit ${response.exit_code}]`;
  return JSON.stringify(response);
}

const NUMBER = /[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?/;

// The first number in the reply (a frame's first value).
export function replyNumber(command) {
  const response = command.response;
  if (!response) return null;
  if (Array.isArray(response.values)) return response.values.length ? Number(response.values[0]) : null;
  const match = replyText(command).match(NUMBER);
  return match ? Number(match[0]) : null;
}

// The analysis verdict as a number: the `number` analyzer's value, or a numeric manual value.
export function analysisNumber(command) {
  const value = command.analysis ? command.analysis.value : undefined;
  if (typeof value === "number") return value;
  if (value && typeof value === "object" && typeof value.value === "number") return value.value;
  return null;
}

// Text typed for a raw command: \n \r \t \\ and \xHH escapes become those bytes.
export function typedBytes(text) {
  const bytes = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length) {
      const next = text[i + 1];
      const simple = { n: 10, r: 13, t: 9, "\\": 92, 0: 0 }[next];
      if (simple !== undefined) { bytes.push(simple); i++; continue; }
      if (next === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
        bytes.push(parseInt(text.slice(i + 2, i + 4), 16)); i += 3; continue;
      }
    }
    bytes.push(...new TextEncoder().encode(c));
  }
  return btoa(String.fromCharCode(...bytes));
}
