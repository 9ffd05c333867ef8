import { clear, getJSON, h, parseHash } from "./dom.js";
import { showMap } from "./map.js";
import { showTrace } from "./timeline.js";
import { showTraces } from "./traces.js";

const main = document.getElementById("main");
let current = null; // the view shown: {stop()}

async function route() {
  if (current && current.stop) current.stop();
  current = null;
  const { view, rest, params } = parseHash(location.hash);
  document.getElementById("nav-traces").classList.toggle("active", view !== "map");
  document.getElementById("nav-map").classList.toggle("active", view === "map");
  clear(main);
  try {
    if (view === "trace" && rest) current = await showTrace(main, rest);
    else if (view === "map") current = await showMap(main, params);
    else current = await showTraces(main, params);
  } catch (err) {
    clear(main).appendChild(h("p", { class: "error-box", text: "Could not load: " + err.message }));
  }
}

async function storeInfo() {
  try {
    const status = await getJSON("/api/status");
    const text = status.store_exists
      ? `${status.traces} traces in ${status.store}`
      : `no store yet at ${status.store}`;
    document.getElementById("store-info").textContent = text;
  } catch (err) {
    document.getElementById("store-info").textContent = "the console is not answering";
  }
}

window.addEventListener("hashchange", route);
route();
storeInfo();
setInterval(storeInfo, 5000);
