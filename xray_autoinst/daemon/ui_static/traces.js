// The trace list: filters, a latency histogram (drag or click to select a range), live rows.
import { clear, fmtDuration, fmtTime, getJSON, h, hashFor, rangeSelect, s, sinceOf } from "./dom.js";

const POLL_MS = 2000;
const FIELDS = ["service", "status", "mark", "q", "trace", "min_ms", "max_ms", "range", "node"];

function apiQuery(params) {
  const q = new URLSearchParams();
  for (const key of ["service", "status", "mark", "q", "trace", "node"]) {
    if (params.get(key)) q.set(key, params.get(key));
  }
  if (params.get("min_ms")) q.set("min", String(Number(params.get("min_ms")) / 1000));
  if (params.get("max_ms")) q.set("max", String(Number(params.get("max_ms")) / 1000));
  const since = sinceOf(params.get("range"));
  if (since !== null) q.set("since", since.toFixed(3));
  q.set("limit", "200");
  return "/api/traces?" + q.toString();
}

export function marksOf(t) {
  const out = [];
  for (const key of ["fault", "error", "throttle"]) if (t[key]) out.push(key);
  if (t.in_progress) out.push("in progress");
  return out;
}

export function markBadges(marks) {
  return marks.map((m) => h("span", { class: "badge " + m.replace(" ", "-"), text: m }));
}

// today's times without the date
function shortTime(epoch) {
  const text = fmtTime(epoch);
  if (epoch === null || epoch === undefined) return text;
  const d = new Date(epoch * 1000), now = new Date();
  return d.toDateString() === now.toDateString() ? text.slice(11) : text;
}

function statusClass(status) {
  if (status === null || status === undefined) return "";
  if (status === 429) return "throttle";
  if (status >= 500) return "fault";
  if (status >= 400) return "error";
  return "ok";
}

export async function showTraces(root, initial) {
  const params = new URLSearchParams();
  for (const key of FIELDS) if (initial.get(key)) params.set(key, initial.get(key));
  let timer = null;
  let stopped = false;
  let lastBody = "";
  let known = null; // trace ids shown, to mark the new ones

  const count = h("span", { class: "count", id: "trace-count" });
  const histo = h("div", { class: "histogram", id: "histogram" });
  const rangeNote = h("span", { class: "range-note", id: "range-note" });
  const tbody = h("tbody", { id: "trace-rows" });
  const serviceList = h("datalist", { id: "service-names" });

  function set(key, value) {
    if (value === "" || value === null || value === undefined) params.delete(key);
    else params.set(key, String(value));
    history.replaceState(null, "", hashFor("traces", params));
    lastBody = "";
    known = null;
    load();
  }

  function input(key, label, attrs = {}) {
    const el = h("input", {
      id: "f-" + key, name: key, value: params.get(key) || "", placeholder: label,
      "aria-label": label, ...attrs,
      onchange: (e) => set(key, e.target.value.trim()),
      onkeydown: (e) => { if (e.key === "Enter") set(key, e.target.value.trim()); },
    });
    return h("label", { class: "field" }, h("span", { text: label }), el);
  }

  const markSelect = h("select", { id: "f-mark", onchange: (e) => set("mark", e.target.value) },
    [["", "any"], ["fault", "fault (5xx)"], ["error", "error (4xx)"], ["throttle", "throttle (429)"],
     ["ok", "ok"], ["in_progress", "in progress"]].map(([v, l]) => h("option", { value: v, text: l })));
  markSelect.value = params.get("mark") || "";

  const nodeNote = params.get("node")
    ? h("span", { class: "chip", id: "node-chip" }, "through ", h("b", { text: params.get("node") }), " ",
        h("button", { type: "button", class: "link", text: "×", title: "remove",
          onclick: () => { params.delete("node"); set("node", ""); nodeNote.remove(); } }))
    : null;

  const filters = h("div", { class: "filters", id: "filters" },
    input("service", "service", { list: "service-names", size: 16 }),
    input("q", "URL or route contains", { size: 22 }),
    input("status", "status (500, 5xx)", { size: 8 }),
    h("label", { class: "field" }, h("span", { text: "outcome" }), markSelect),
    input("min_ms", "min ms", { size: 6, inputmode: "decimal" }),
    input("max_ms", "max ms", { size: 6, inputmode: "decimal" }),
    h("label", { class: "field" }, h("span", { text: "time" }), rangeSelect(params.get("range"), (v) => set("range", v))),
    input("trace", "trace id", { size: 14 }),
    h("button", { type: "button", id: "f-clear", text: "clear",
      onclick: () => { location.hash = "#/traces"; } }),
    nodeNote, serviceList);

  root.appendChild(h("section", { class: "traces" },
    h("h1", {}, "Traces ", count),
    filters,
    h("div", { class: "histo-wrap" }, histo, rangeNote),
    h("table", { class: "list", id: "trace-table" },
      h("thead", {}, h("tr", {}, ["Time", "Trace ID", "Service", "Request", "Status",
        "Duration", "Segments", "Marks"].map((t) => h("th", { text: t })))),
      tbody)));

  function drawHistogram(hist) {
    clear(histo);
    const bins = hist.bins || [];
    if (!bins.length) {
      histo.appendChild(h("p", { class: "muted", text: "no finished traces to chart" }));
      return;
    }
    const W = 720, H = 90, pad = 18;
    const top = Math.max(...bins.map((b) => b.count), 1);
    const bw = W / bins.length;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H + pad}`, class: "histo-svg", role: "img",
      "aria-label": "latency histogram: drag across bars to select a duration range" });
    let dragFrom = null;
    const choose = (a, b) => {
      const lo = bins[Math.min(a, b)].lo, hi = bins[Math.max(a, b)].hi;
      params.set("min_ms", (lo * 1000).toFixed(3));
      set("max_ms", (hi * 1000).toFixed(3));
    };
    bins.forEach((b, i) => {
      const bh = b.count ? Math.max(2, (b.count / top) * H) : 0;
      const g = s("g", { class: "bin", "data-index": i,
        onmousedown: (e) => { dragFrom = i; e.preventDefault(); },
        onmouseup: () => { if (dragFrom !== null) choose(dragFrom, i); dragFrom = null; } },
        s("rect", { x: i * bw, y: 0, width: bw, height: H, class: "hit" }),
        s("rect", { x: i * bw + 1, y: H - bh, width: Math.max(1, bw - 2), height: bh, class: "hbar" }),
        s("title", { text: `${fmtDuration(b.lo)} – ${fmtDuration(b.hi)}: ${b.count} traces` }));
      svg.appendChild(g);
    });
    svg.appendChild(s("text", { x: 0, y: H + 14, class: "axis", text: fmtDuration(bins[0].lo) }));
    svg.appendChild(s("text", { x: W, y: H + 14, class: "axis end",
      text: fmtDuration(bins[bins.length - 1].hi) }));
    histo.appendChild(svg);
    clear(rangeNote);
    if (params.get("min_ms") || params.get("max_ms")) {
      rangeNote.append(`duration ${params.get("min_ms") || "0"} – ${params.get("max_ms") || "∞"} ms `,
        h("button", { type: "button", class: "link", id: "range-clear", text: "clear range",
          onclick: () => { params.delete("min_ms"); set("max_ms", ""); } }));
    } else {
      rangeNote.textContent = "drag across the bars (or click one) to select a duration range";
    }
  }

  function row(t, isNew) {
    const request = [t.method, t.url].filter(Boolean).join(" ") || "-";
    const services = (t.services && t.services.length ? t.services : [t.service || "-"]).join(" → ");
    const link = "#/trace/" + encodeURIComponent(t.trace_id);
    return h("tr", { class: "trace-row" + (isNew ? " new" : ""), "data-trace-id": t.trace_id,
        onclick: (e) => { if (e.target.tagName !== "A") location.hash = link; } },
      h("td", { class: "time", text: shortTime(t.start_time), title: fmtTime(t.start_time) }),
      h("td", { class: "mono" }, h("a", { href: link, class: "trace-link", text: t.trace_id })),
      h("td", { class: "service", text: services, title: services }),
      h("td", { class: "request", text: request, title: request }),
      h("td", { class: "status " + statusClass(t.status),
        text: t.status === null || t.status === undefined ? "-" : String(t.status) }),
      h("td", { class: "num", text: t.in_progress && t.duration === null ? "…" : fmtDuration(t.duration) }),
      h("td", { class: "num", text: String(t.segments) }),
      h("td", { class: "marks" }, markBadges(marksOf(t))));
  }

  async function load() {
    if (stopped) return;
    clearTimeout(timer);
    try {
      const url = apiQuery(params);
      const data = await getJSON(url);
      if (stopped) return;
      const body = JSON.stringify(data);
      if (body !== lastBody) {
        lastBody = body;
        count.textContent = data.store_exists
          ? `${data.total} of ${data.store_traces}` + (data.total > data.traces.length ? ` (newest ${data.traces.length} shown)` : "")
          : "(no store yet: start the daemon or run an app with xray-run --local)";
        clear(serviceList);
        for (const name of data.services) serviceList.appendChild(h("option", { value: name }));
        drawHistogram(data.histogram);
        const ids = new Set(data.traces.map((t) => t.trace_id));
        clear(tbody);
        if (!data.traces.length) {
          tbody.appendChild(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "no traces match" })));
        }
        const frag = document.createDocumentFragment();
        for (const t of data.traces) frag.appendChild(row(t, known !== null && !known.has(t.trace_id)));
        tbody.appendChild(frag);
        known = ids;
      }
    } catch (err) {
      count.textContent = "(" + err.message + ")";
    }
    if (!stopped) timer = setTimeout(load, POLL_MS);
  }

  await load();
  return { stop() { stopped = true; clearTimeout(timer); } };
}
