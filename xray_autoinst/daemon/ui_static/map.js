// The service map: clients -> services -> downstream nodes, drawn as SVG; a click on a node
// lists the traces through it. Edges carry the caller's view of latency.
import { clear, fmtDuration, getJSON, h, hashFor, pct, rangeSelect, s, sinceOf } from "./dom.js";

const POLL_MS = 5000;
const COL_W = 300, ROW_H = 160, MARGIN_X = 90, MARGIN_Y = 70, R = 30;

function kindOf(node) {
  if (node.id === "client") return "client";
  if (node.id.startsWith("database:")) return "database";
  if (node.id.startsWith("aws:")) return "aws";
  if (node.id.startsWith("remote:")) return "remote";
  return "service";
}

// columns by the longest path from the clients (a callee right of all its callers; cycles
// are cut after as many rounds as there are nodes), rows by name
export function layout(graph) {
  const ids = graph.nodes.map((n) => n.id);
  const depth = new Map(ids.map((id) => [id, 0]));
  for (let round = 0; round < ids.length; round++) {
    let moved = false;
    for (const e of graph.edges) {
      if (e.source === e.target || !depth.has(e.source) || !depth.has(e.target)) continue;
      const want = depth.get(e.source) + 1;
      if (want > depth.get(e.target) && want < ids.length) { depth.set(e.target, want); moved = true; }
    }
    if (!moved) break;
  }
  const columns = new Map();
  for (const n of graph.nodes) {
    const d = depth.get(n.id) || 0;
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d).push(n);
  }
  const pos = new Map();
  const rowOf = new Map();
  const callers = new Map();
  for (const e of graph.edges) {
    if (!callers.has(e.target)) callers.set(e.target, []);
    callers.get(e.target).push(e.source);
  }
  let rows = 1;
  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  // column by column from the left: each node near the mean row of its callers (fewer
  // crossings), then by name
  for (const d of [...columns.keys()].sort((a, b) => a - b)) {
    const nodes = columns.get(d);
    const weight = (n) => {
      const rs = (callers.get(n.id) || []).filter((c) => rowOf.has(c)).map((c) => rowOf.get(c));
      return rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : Infinity;
    };
    nodes.sort((a, b) => weight(a) - weight(b) || byName(a, b));
    rows = Math.max(rows, nodes.length);
    nodes.forEach((n, i) => {
      rowOf.set(n.id, i);
      pos.set(n.id, { x: MARGIN_X + d * COL_W, y: MARGIN_Y + i * ROW_H });
    });
  }
  const cols = Math.max(...[...columns.keys()], 0) + 1;
  return { pos, width: MARGIN_X * 2 + (cols - 1) * COL_W + 120, height: MARGIN_Y + rows * ROW_H };
}

function donut(node) {
  const C = 2 * Math.PI * R;
  const parts = [["fault", node.fault_rate || 0], ["throttle", node.throttle_rate || 0],
    ["error", Math.max(0, (node.error_rate || 0) - (node.throttle_rate || 0))]];
  const ok = Math.max(0, 1 - parts.reduce((a, [, r]) => a + r, 0));
  parts.unshift(["ok", ok]);
  const g = s("g", { class: "donut", transform: "rotate(-90)" });
  let offset = 0;
  for (const [cls, rate] of parts) {
    if (rate <= 0) continue;
    g.appendChild(s("circle", { r: R, class: "ring " + cls, "stroke-dasharray": `${rate * C} ${C}`,
      "stroke-dashoffset": String(-offset * C) }));
    offset += rate;
  }
  return g;
}

function shape(node, kind) {
  if (kind === "client") return s("circle", { r: 14, class: "shape client" });
  if (kind === "database") {
    return s("g", { class: "shape database" },
      s("path", { d: `M ${-R} ${-R / 2} v ${R} a ${R} ${R / 3} 0 0 0 ${2 * R} 0 v ${-R} a ${R} ${R / 3} 0 0 0 ${-2 * R} 0 a ${R} ${R / 3} 0 0 0 ${2 * R} 0` }));
  }
  if (kind === "aws") return s("rect", { x: -R, y: -R, width: 2 * R, height: 2 * R, rx: 10, class: "shape aws" });
  if (kind === "remote") return s("circle", { r: R, class: "shape remote" });
  return s("g", {}, s("circle", { r: R, class: "shape service" }), donut(node));
}

function statsLines(item) {
  const lines = [`${item.requests} req` + (item.avg_latency !== null && item.avg_latency !== undefined ? ` · avg ${fmtDuration(item.avg_latency)}` : "")];
  const rates = [];
  if (item.error_rate) rates.push(`err ${pct(item.error_rate)}`);
  if (item.fault_rate) rates.push(`fault ${pct(item.fault_rate)}`);
  if (item.throttle_rate) rates.push(`thr ${pct(item.throttle_rate)}`);
  if (rates.length) lines.push(rates.join(" · "));
  return lines;
}

export function drawMap(graph, onNode) {
  const { pos, width, height } = layout(graph);
  const svg = s("svg", { class: "map-svg", id: "map-svg", viewBox: `0 0 ${width} ${height}`,
    width, height, role: "img", "aria-label": "service map" });
  svg.appendChild(s("defs", {},
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))));
  const edgeLayer = s("g", { class: "edges" });
  const nodeLayer = s("g", { class: "nodes" });
  const radius = (id) => (id === "client" ? 16 : R + 4);
  for (const e of graph.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    // an edge that skips a column, or stays in one, bends around the nodes between
    const skips = Math.abs(b.x - a.x) > COL_W * 1.5 || Math.abs(b.x - a.x) < 1;
    const dx0 = b.x - a.x, dy0 = b.y - a.y, len0 = Math.hypot(dx0, dy0) || 1;
    const bend = skips ? Math.min(90, len0 / 3) : 0;
    const cx = (a.x + b.x) / 2 + (dy0 / len0) * bend, cy = (a.y + b.y) / 2 - (dx0 / len0) * bend;
    const ux1 = cx - a.x, uy1 = cy - a.y, l1 = Math.hypot(ux1, uy1) || 1;
    const ux2 = b.x - cx, uy2 = b.y - cy, l2 = Math.hypot(ux2, uy2) || 1;
    const x1 = a.x + (ux1 / l1) * radius(e.source), y1 = a.y + (uy1 / l1) * radius(e.source);
    const x2 = b.x - (ux2 / l2) * radius(e.target), y2 = b.y - (uy2 / l2) * radius(e.target);
    const cls = "edge" + (e.fault_rate ? " fault" : e.error_rate ? " error" : "");
    const mx = 0.25 * x1 + 0.5 * cx + 0.25 * x2, my = 0.25 * y1 + 0.5 * cy + 0.25 * y2;
    const lines = statsLines(e);
    edgeLayer.appendChild(s("g", { class: cls, "data-source": e.source, "data-target": e.target },
      s("path", { d: `M ${x1} ${y1} Q ${cx} ${cy} ${x2} ${y2}`, "marker-end": "url(#arrow)" }),
      s("text", { x: mx, y: my - 6 - (lines.length - 1) * 13, class: "edge-label" },
        lines.map((t, i) => s("tspan", { x: mx, dy: i ? 13 : 0, text: t }))),
      s("title", { text: `${e.source} → ${e.target}: ${lines.join(", ")} (as the caller saw it)` })));
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const kind = kindOf(n);
    const cls = "node " + kind + (n.fault_rate ? " has-fault" : n.error_rate ? " has-error" : "");
    const name = n.name.length > 32 ? n.name.slice(0, 31) + "…" : n.name;
    const label = [s("tspan", { x: 0, dy: 0, class: "node-name", text: name })];
    if (kind !== "client" && kind !== "service" && n.type !== n.name) label.push(s("tspan", { x: 0, dy: 14, class: "node-type", text: n.type }));
    else if (kind === "service" && n.type !== "service") label.push(s("tspan", { x: 0, dy: 14, class: "node-type", text: n.type }));
    if (kind !== "client") statsLines(n).forEach((t) => label.push(s("tspan", { x: 0, dy: 14, class: "node-stats", text: t })));
    else label.push(s("tspan", { x: 0, dy: 14, class: "node-stats", text: `${n.requests} req` }));
    const g = s("g", { class: cls, transform: `translate(${p.x} ${p.y})`, "data-node-id": n.id, tabindex: 0,
        role: "button", "aria-label": `${n.name}: list its traces`,
        onclick: () => onNode(n), onkeydown: (ev) => { if (ev.key === "Enter") onNode(n); } },
      shape(n, kind),
      kind === "service" && n.avg_latency !== null ? s("text", { class: "inner", y: 4, text: fmtDuration(n.avg_latency) }) : null,
      s("text", { class: "node-label", y: (kind === "client" ? 16 : R) + 16 }, label),
      s("title", { class: "node-title", text: `${n.name} (${n.type}): click to list the traces through it` }));
    nodeLayer.appendChild(g);
  }
  svg.append(edgeLayer, nodeLayer);
  return svg;
}

export async function showMap(root, initial) {
  const params = new URLSearchParams();
  for (const key of ["range", "service"]) if (initial.get(key)) params.set(key, initial.get(key));
  let stopped = false, timer = null, lastBody = "";
  const info = h("span", { class: "count", id: "map-count" });
  const canvas = h("div", { class: "map-canvas", id: "map-canvas" });
  const set = (key, value) => {
    if (value) params.set(key, value); else params.delete(key);
    history.replaceState(null, "", hashFor("map", params));
    lastBody = "";
    load();
  };
  const focus = h("input", { id: "m-service", placeholder: "service (* wildcards)", value: params.get("service") || "",
    onchange: (e) => set("service", e.target.value.trim()),
    onkeydown: (e) => { if (e.key === "Enter") set("service", e.target.value.trim()); } });
  root.appendChild(h("section", { class: "map" },
    h("h1", {}, "Service map ", info),
    h("div", { class: "filters" },
      h("label", { class: "field" }, h("span", { text: "time" }), rangeSelect(params.get("range"), (v) => set("range", v))),
      h("label", { class: "field" }, h("span", { text: "only this service and its neighbours" }), focus),
      h("span", { class: "legend" }, "ring: ", h("span", { class: "swatch ok" }), "ok ",
        h("span", { class: "swatch error" }), "error ", h("span", { class: "swatch fault" }), "fault ",
        h("span", { class: "swatch throttle" }), "throttle · edge latency: as the caller saw it")),
    canvas));

  const onNode = (n) => {
    const q = new URLSearchParams();
    q.set("node", n.id);
    if (params.get("range")) q.set("range", params.get("range"));
    location.hash = hashFor("traces", q);
  };

  async function load() {
    if (stopped) return;
    clearTimeout(timer);
    const q = new URLSearchParams();
    const since = sinceOf(params.get("range"));
    if (since !== null) q.set("since", since.toFixed(3));
    if (params.get("service")) q.set("service", params.get("service"));
    try {
      const graph = await getJSON("/api/map?" + q.toString());
      if (stopped) return;
      const body = JSON.stringify(graph);
      if (body !== lastBody) {
        lastBody = body;
        info.textContent = `${graph.traces} traces · ${graph.nodes.length} nodes · ${graph.edges.length} edges` +
          (graph.nodes_left_out ? ` (${graph.nodes_left_out} quieter nodes left out: pick a time range or a service)` : "");
        clear(canvas);
        if (!graph.nodes.length) canvas.appendChild(h("p", { class: "muted", text: "no traces in this range" }));
        else canvas.appendChild(drawMap(graph, onNode));
      }
    } catch (err) {
      info.textContent = "(" + err.message + ")";
    }
    if (!stopped) timer = setTimeout(load, POLL_MS);
  }
  await load();
  return { stop() { stopped = true; clearTimeout(timer); } };
}
