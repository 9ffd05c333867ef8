// Building the DOM: text from traces is only ever set with textContent or as attribute values,
// never parsed as markup (no HTML parsing of any data anywhere in this console).
const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "style" && typeof value === "object") {
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, v);
    } else if (key === "value" && "value" in node) node.value = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
  return node;
}

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  return append(node, children);
}

export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  apply(node, attrs);
  return append(node, children);
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const ms = seconds * 1000;
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return ms.toFixed(1) + " ms";
  if (seconds < 60) return seconds.toFixed(3) + " s";
  const total = Math.round(seconds);
  return Math.floor(total / 60) + "m" + String(total % 60).padStart(2, "0") + "s";
}

export function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "-";
  const d = new Date(epoch * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function pct(rate) {
  return (rate * 100).toFixed(1) + "%";
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// a hash route: "#/traces?service=x" -> {view: "traces", rest: "", params: URLSearchParams}
export function parseHash(hash) {
  const text = (hash || "").replace(/^#\/?/, "");
  const q = text.indexOf("?");
  const path = q >= 0 ? text.slice(0, q) : text;
  const params = new URLSearchParams(q >= 0 ? text.slice(q + 1) : "");
  const [view, ...rest] = path.split("/");
  return { view: view || "traces", rest: rest.map(decodeURIComponent).join("/"), params };
}

export function hashFor(view, params) {
  const q = params && [...params.keys()].length ? "?" + params.toString() : "";
  return `#/${view}${q}`;
}

export const RANGES = [
  ["", "all time"], ["300", "last 5 min"], ["900", "last 15 min"], ["3600", "last hour"],
  ["21600", "last 6 hours"], ["86400", "last day"], ["604800", "last week"],
];

export function rangeSelect(current, onChange) {
  const select = h("select", { id: "range", onchange: (e) => onChange(e.target.value) },
    RANGES.map(([value, label]) => h("option", { value, text: label })));
  select.value = current || "";
  return select;
}

// since (epoch seconds) for a "range" parameter in seconds back from now
export function sinceOf(range) {
  const seconds = Number(range);
  return range && Number.isFinite(seconds) ? Date.now() / 1000 - seconds : null;
}
