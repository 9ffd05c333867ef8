// One trace: every segment and subsegment as a row, bars on one time axis, details on click.
import { clear, fmtDuration, fmtTime, getJSON, h, s } from "./dom.js";
import { markBadges } from "./traces.js";

const PHASES = new Set(["connect", "dns", "dial", "tls", "handshake", "connection"]);

function kids(entity) {
  return Array.isArray(entity.subsegments) ? entity.subsegments.filter((c) => c && typeof c === "object") : [];
}

function endOf(entity) {
  return typeof entity.end_time === "number" ? entity.end_time : null;
}

function statusOf(entity) {
  const r = entity.http && entity.http.response;
  if (r && (typeof r.status === "number" || /^\d+$/.test(String(r.status || "")))) return Number(r.status);
  return null;
}

// Display order: depth first by start time; a segment called from a subsegment of this trace
// (a downstream service) sits under that subsegment, on the same axis.
export function displayRows(trace) {
  const segments = trace.segments || [];
  const known = new Set();
  const walk = (e) => { if (typeof e.id === "string") known.add(e.id); kids(e).forEach(walk); };
  segments.forEach(walk);
  const called = new Map();
  const tops = [];
  for (const seg of segments) {
    const parent = seg.parent_id;
    if (typeof parent === "string" && known.has(parent) && parent !== seg.id) {
      if (!called.has(parent)) called.set(parent, []);
      called.get(parent).push(seg);
    } else tops.push(seg);
  }
  for (const o of trace.orphans || []) tops.push({ ...o, __orphan: true });
  const rows = [];
  const seen = new Set();
  const segSet = new Set(segments);
  const visit = (entity, depth, service) => {
    if (seen.has(entity)) return; // a malformed trace may loop
    seen.add(entity);
    const segment = segSet.has(entity);
    const svc = segment ? entity.name : service;
    rows.push({ entity, depth, segment, service: svc });
    const items = kids(entity).concat(called.get(entity.id) || []);
    items.sort((a, b) => (a.start_time || 0) - (b.start_time || 0));
    for (const child of items) visit(child, depth + 1, svc);
  };
  for (const top of tops) visit(top, 0, top.name);
  return rows;
}

function describe(entity) {
  const sql = entity.sql;
  if (sql && typeof sql === "object") {
    if (typeof sql.sanitized_query === "string" && sql.sanitized_query.trim()) return sql.sanitized_query.replace(/\s+/g, " ");
    return `${sql.database_type || "SQL"} ${sql.url || ""}`;
  }
  const aws = entity.aws;
  if (aws && typeof aws.operation === "string") {
    for (const key of ["table_name", "queue_url", "bucket_name", "function_name", "topic_arn"]) {
      if (typeof aws[key] === "string") return `${aws.operation} ${aws[key]}`;
    }
    return aws.operation;
  }
  const req = entity.http && entity.http.request;
  if (req && typeof req === "object") return [req.method, req.url].filter((x) => typeof x === "string").join(" ");
  return "";
}

function value(v) {
  if (v === null || v === undefined) return h("span", { class: "muted", text: "-" });
  if (typeof v === "object") return h("pre", { class: "json", text: JSON.stringify(v, null, 2) });
  return h("span", { text: String(v) });
}

function table(obj, id) {
  if (!obj || typeof obj !== "object") return value(obj);
  return h("table", { class: "kv", id },
    h("tbody", {}, Object.entries(obj).map(([k, v]) =>
      h("tr", {}, h("th", { text: k }), h("td", {}, typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length <= 12 && Object.values(v).every((x) => typeof x !== "object" || x === null) ? table(v) : value(v))))));
}

function section(title, id, ...content) {
  return h("section", { class: "detail-section", id }, h("h3", { text: title }), ...content);
}

function causeView(cause) {
  if (typeof cause === "string") return h("p", { text: "cause: " + cause });
  const out = [];
  if (cause.working_directory) out.push(h("p", { class: "muted", text: "working directory: " + cause.working_directory }));
  for (const exc of Array.isArray(cause.exceptions) ? cause.exceptions : []) {
    if (!exc || typeof exc !== "object") continue;
    const frames = Array.isArray(exc.stack) ? exc.stack : [];
    out.push(h("div", { class: "exception" },
      h("p", { class: "exc-title" }, h("b", { text: exc.type || "exception" }),
        exc.message ? ": " : "", exc.message ? h("span", { class: "exc-message", text: exc.message }) : null,
        exc.remote ? h("span", { class: "badge remote", text: "remote" }) : null),
      frames.length ? h("ol", { class: "stack" }, frames.map((f) =>
        h("li", { text: `${f.path || "?"}:${f.line ?? "?"} in ${f.label || "?"}` }))) : null,
      exc.truncated ? h("p", { class: "muted", text: `(${exc.truncated} frames left out)` }) : null));
  }
  return out;
}

function details(panel, entity) {
  clear(panel);
  const start = entity.start_time, end = endOf(entity);
  const overview = {
    name: entity.name, id: entity.id, parent_id: entity.parent_id, trace_id: entity.trace_id,
    namespace: entity.namespace, origin: entity.origin, start: fmtTime(start),
    duration: end !== null && typeof start === "number" ? fmtDuration(end - start) : "in progress",
  };
  for (const k of ["fault", "error", "throttle", "in_progress"]) if (entity[k]) overview[k] = true;
  for (const k of Object.keys(overview)) if (overview[k] === undefined) delete overview[k];
  panel.appendChild(h("h2", { text: String(entity.name || "?") }));
  panel.appendChild(section("Overview", "d-overview", table(overview)));
  if (entity.http) {
    if (entity.http.request) panel.appendChild(section("HTTP request", "d-http-request", table(entity.http.request)));
    if (entity.http.response) panel.appendChild(section("HTTP response", "d-http-response", table(entity.http.response)));
  }
  if (entity.sql) {
    const { sanitized_query: q, ...rest } = entity.sql;
    panel.appendChild(section("SQL", "d-sql", q ? h("pre", { class: "sql", id: "d-sql-query", text: q }) : null, table(rest)));
  }
  if (entity.aws) panel.appendChild(section("AWS", "d-aws", table(entity.aws)));
  if (entity.annotations) panel.appendChild(section("Annotations", "d-annotations", table(entity.annotations)));
  if (entity.metadata) panel.appendChild(section("Metadata", "d-metadata", value(entity.metadata)));
  if (entity.cause) panel.appendChild(section("Cause", "d-cause", causeView(entity.cause)));
  const known = new Set(["name", "id", "parent_id", "trace_id", "namespace", "origin", "start_time",
    "end_time", "fault", "error", "throttle", "in_progress", "http", "sql", "aws", "annotations",
    "metadata", "cause", "subsegments", "type"]);
  const rest = Object.fromEntries(Object.entries(entity).filter(([k]) => !known.has(k)));
  if (Object.keys(rest).length) panel.appendChild(section("Other fields", "d-other", value(rest)));
}

const POLL_MS = 3000;

// A trace with parts still in progress (or subsegments waiting for their parent) is fetched
// again every few seconds and redrawn when it changed, keeping the selected row.
export async function showTrace(root, traceId) {
  let stopped = false, timer = null, last = "", selectedId = null;
  const container = h("div", { id: "trace-view" });
  root.appendChild(container);
  async function load() {
    const trace = await getJSON("/api/traces/" + encodeURIComponent(traceId));
    if (stopped) return;
    const body = JSON.stringify(trace);
    let live = false;
    if (body !== last) {
      last = body;
      clear(container);
      live = drawTrace(container, trace, selectedId, (id) => { selectedId = id; });
    } else live = true;
    if (live && !stopped) timer = setTimeout(() => load().catch(() => {}), POLL_MS);
  }
  await load();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

function drawTrace(root, trace, selectedId, onSelect) {
  const rows = displayRows(trace);
  const t0 = trace.start_time ?? 0;
  let t1 = trace.end_time ?? t0;
  for (const { entity } of rows) if (typeof entity.start_time === "number") t1 = Math.max(t1, entity.start_time);
  const total = Math.max(t1 - t0, 1e-6);
  const segs = (trace.segments || []).length;
  const rootEntity = rows.length ? rows[0].entity : {};
  const services = [...new Set((trace.segments || []).map((x) => x.name))];

  const panel = h("aside", { class: "details", id: "details" },
    h("p", { class: "muted", text: "Click a row to see its details." }));
  const axis = h("div", { class: "axis-row" });
  for (let i = 0; i <= 2; i++) {
    axis.appendChild(h("span", { class: "tick", style: { left: (i * 50) + "%" }, text: fmtDuration((total * i) / 2) }));
  }
  const body = h("div", { class: "rows", id: "timeline-rows", role: "tree" });
  let selected = null, toSelect = null;
  const frag = document.createDocumentFragment();
  rows.forEach(({ entity, depth, segment, service }, index) => {
    const start = typeof entity.start_time === "number" ? entity.start_time : t0;
    const end = endOf(entity);
    const inProgress = entity.in_progress === true || end === null;
    const stop = end === null ? t1 : end;
    const left = ((start - t0) / total) * 100;
    const width = Math.max(((stop - start) / total) * 100, 0.15);
    const status = statusOf(entity);
    const classes = ["bar"];
    if (entity.fault) classes.push("fault");
    else if (entity.throttle) classes.push("throttle");
    else if (entity.error) classes.push("error");
    if (inProgress) classes.push("in-progress");
    if (PHASES.has(String(entity.name).toLowerCase())) classes.push("phase");
    if (segment) classes.push("segment");
    const what = describe(entity);
    const marks = [];
    for (const k of ["fault", "error", "throttle"]) if (entity[k] === true) marks.push(k);
    if (inProgress) marks.push("in progress");
    if (entity.__orphan) marks.push("orphan");
    const row = h("div", {
        class: "row" + (segment ? " segment-row" : "") + (PHASES.has(String(entity.name).toLowerCase()) ? " phase-row" : ""),
        role: "treeitem", tabindex: 0, "data-index": index, "data-depth": depth, "data-id": entity.id || "",
        "data-name": String(entity.name ?? ""), "aria-level": depth + 1,
        onclick: () => select(), onkeydown: (e) => { if (e.key === "Enter") select(); } },
      h("div", { class: "name", style: { "padding-left": (depth * 14 + 4) + "px" }, title: what || String(entity.name) },
        segment ? h("span", { class: "svc-dot", title: "segment of " + service }) : null,
        h("span", { class: "entity-name", text: String(entity.name ?? "?") }),
        what ? h("span", { class: "what", text: what }) : null),
      h("div", { class: "track" },
        h("div", { class: classes.join(" "), style: { left: left + "%", width: width + "%" },
          title: `${entity.name}: ${end === null ? "in progress" : fmtDuration(end - start)}` })),
      h("div", { class: "dur num", text: end === null ? "…" : fmtDuration(end - start) }),
      h("div", { class: "status", text: status === null ? "" : String(status) }),
      h("div", { class: "marks" }, markBadges(marks)));
    function select() {
      if (selected) selected.classList.remove("selected");
      selected = row;
      row.classList.add("selected");
      details(panel, entity);
      onSelect(entity.id);
    }
    if (selectedId && entity.id === selectedId) toSelect = select;
    frag.appendChild(row);
  });
  body.appendChild(frag);

  const header = h("div", { class: "trace-head" },
    h("h1", {}, "Trace ", h("span", { class: "mono", id: "trace-id", text: trace.trace_id })),
    h("p", { class: "summary" },
      h("span", { text: `${rootEntity.name ?? "?"}: ${describe(rootEntity)}` }), " · ",
      h("span", { text: fmtTime(t0) }), " · ",
      h("span", { text: fmtDuration(trace.duration ?? null) }), " · ",
      h("span", { text: `${segs} segment${segs === 1 ? "" : "s"}, ${rows.length} rows` }), " · ",
      h("span", { text: "services: " + services.join(", ") }),
      (trace.orphans || []).length ? h("span", { class: "muted", text: ` · ${(trace.orphans || []).length} subsegments whose parent has not arrived` }) : null,
      rows.some((r) => r.entity.in_progress === true) ? h("span", { class: "badge in-progress", text: "in progress" }) : null),
    h("p", {}, h("a", { href: "#/traces", text: "← all traces" })));
  root.appendChild(h("section", { class: "trace" }, header,
    h("div", { class: "timeline-wrap" },
      h("div", { class: "timeline" },
        h("div", { class: "row head" }, h("div", { class: "name", text: "Name" }),
          h("div", { class: "track" }, axis), h("div", { class: "dur", text: "Duration" }),
          h("div", { class: "status", text: "Status" }), h("div", { class: "marks", text: "Marks" })),
        body),
      panel)));
  if (toSelect) toSelect();
  return rows.some((r) => r.entity.in_progress === true || endOf(r.entity) === null || r.entity.__orphan);
}
