// emolens web page: upload or webcam -> POST /v1/predict -> boxes, face list, probability bars; or, with "Run in
// this browser" (and always on a static site written by `emolens web export`), the same models run here through
// the ES module in web/ (onnxruntime-web): no image leaves the page.
// Plain JavaScript, no libraries, nothing fetched from outside this server (or the static site's folder).
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = { // RGB, the same as emolens.draw.COLOURS (which are BGR)
  angry: [220, 40, 40], disgust: [40, 140, 40], fear: [160, 60, 160], happy: [255, 200, 30],
  neutral: [200, 200, 200], sad: [40, 120, 200], surprise: [120, 200, 60],
};
// A static site (no server behind the page) marks its <html data-emolens-site="static">.
const STATIC_SITE = document.documentElement.dataset.emolensSite === "static";
const state = { model: null, faces: [], selected: 0, mode: "upload", live: false, stream: null,
  key: sessionStorage.getItem("emolens-key") || "", width: 0, height: 0,
  engine: STATIC_SITE ? "browser" : sessionStorage.getItem("emolens-engine") || "server", liveCtl: null };

function colour(label) {
  let c = COLOURS[label];
  if (!c) { // a stable colour for custom labels
    let h = 0;
    for (const ch of label) h = (h * 31 + ch.charCodeAt(0)) % 360;
    return { css: `hsl(${h} 70% 55%)`, text: "#fff" };
  }
  const light = c[0] * 0.299 + c[1] * 0.587 + c[2] * 0.114 > 150;
  return { css: `rgb(${c.join(",")})`, text: light ? "#111" : "#fff" };
}

function pct(x) { return `${(100 * x).toFixed(x >= 0.995 || x < 0.1 ? 1 : 0)}%`; }

function showError(msg) {
  const el = $("error");
  el.textContent = msg || "";
  el.hidden = !msg;
}

function setStatus(text) { $("status").textContent = text; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["X-API-Key"] = state.key;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    if (res.status === 401) $("key-row").hidden = false;
    const msg = body && body.error ? body.error.message : `HTTP ${res.status}`;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ------------------------------------------------------------------ model info
// The metrics stored in a model are named <split>_<metric>, e.g. val_accuracy, val_macro_f1, val_ece:
// shown as "Accuracy (val)", "Macro F1 (val)", "ECE (val)".
const SPLITS = ["train", "val", "test"];
const ACRONYMS = { ece: "ECE", f1: "F1", auc: "AUC", roc: "ROC", nll: "NLL" };
const PLAIN_METRICS = ["ece", "nll"]; // not a share of faces: shown as a number, not a percentage

function metricLabel(key) {
  const words = key.split("_");
  const split = SPLITS.includes(words[0]) ? words.shift() : "";
  let name = words.map((w) => ACRONYMS[w] || w).join(" ").replace("cross fitted", "cross-fitted");
  name = name.charAt(0).toUpperCase() + name.slice(1);
  return split ? `${name} (${split})` : name;
}

function metricValue(key, v) {
  if (typeof v !== "number") return v;
  if (key.split("_").some((w) => PLAIN_METRICS.includes(w))) return v.toFixed(3);
  return v <= 1 ? `${(100 * v).toFixed(1)}%` : String(v);
}

function showModel(m) {
  state.model = m;
  $("model-chip").textContent = m.name || m.id;
  const rows = [["Model", m.id], ["Architecture", m.architecture || "–"],
    ["Input", `${m.input_size}×${m.input_size} ${m.channels === 1 ? "gray" : "RGB"}`],
    ["Classes", m.labels.join(", ")],
    ["Detector", m.detector + (liveDetector() && liveDetector() !== m.detector ? ` (live: ${liveDetector()})` : "")]];
  for (const [k, v] of Object.entries(m.metrics || {})) rows.push([metricLabel(k), metricValue(k, v)]);
  const dl = $("model-info");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
  setEngine(state.engine);
  renderChart();
}

// ------------------------------------------------------------------ in this browser
// The ES module and the models load once, on first use; a static site starts loading them at once.
const MANIFEST = STATIC_SITE ? "models/manifest.json" : "v1/web/manifest.json";
let browser = null;

function browserModel(manifest) { // what /v1/model says, from the manifest the module loads
  const meta = manifest.model.meta;
  return { id: meta.name || manifest.model.name, name: meta.name || manifest.model.name,
    architecture: meta.architecture, input_size: meta.input_size, channels: meta.channels, labels: meta.labels,
    metrics: meta.metrics || {}, detector: manifest.detector, detectors: Object.keys(manifest.detectors),
    explain: false };
}

function browserRecognizer() {
  if (!browser) {
    browser = (async () => {
      const mod = await import(new URL("web/emolens.mjs", document.baseURI).href);
      const headers = state.key ? { "X-API-Key": state.key } : {};
      let last = 0;
      const rec = await mod.load(new URL(MANIFEST, document.baseURI).href, { headers, onProgress: (p) => {
        if (performance.now() - last < 200 || state.live) return;
        last = performance.now();
        setStatus(`loading the models into this browser… ${(p.loaded / 1e6).toFixed(1)} MB`);
      } });
      return rec;
    })();
    browser.catch(() => { browser = null; }); // a failed load is tried again next time
  }
  return browser;
}

function setEngine(engine) {
  state.engine = STATIC_SITE ? "browser" : engine;
  if (!STATIC_SITE) sessionStorage.setItem("emolens-engine", state.engine);
  const here = state.engine === "browser";
  $("engine-toggle").checked = here;
  $("engine-toggle").disabled = STATIC_SITE;
  if (STATIC_SITE) $("engine-label").title = "This page has no server: the models run in this browser";
  $("privacy-note").textContent = here ? "It runs in this browser: no image leaves the page."
    : "Nothing leaves this server.";
  const canExplain = !here && state.model && state.model.explain;
  $("explain-toggle").disabled = !canExplain;
  if (!canExplain) $("explain-toggle").checked = false;
  $("explain-toggle").parentElement.title = canExplain ? "Show a heat map of the regions that drove each face's prediction"
    : here ? "explanations are made on the server, not in the browser" : "explanations are not available on this server";
}

async function loadStaticModel() {
  try {
    const res = await fetch(MANIFEST);
    if (!res.ok) throw new Error(`${MANIFEST}: HTTP ${res.status}`);
    showModel(browserModel(await res.json()));
    await browserRecognizer();
    setStatus("ready · runs in this browser");
  } catch (e) {
    $("model-chip").textContent = "model unavailable";
    showError(`Cannot load the model: ${e.message}`);
  }
}

async function loadModel() {
  if (STATIC_SITE) return loadStaticModel();
  try {
    const health = await api("/health");
    if (health.api_key_required && !state.key) { $("key-row").hidden = false; }
    showModel(await api("/v1/model"));
    if (state.engine === "browser") browserRecognizer().catch((err) => showError(err.message));
  } catch (e) {
    $("model-chip").textContent = "model unavailable";
    if (e.status !== 401) showError(`Cannot reach the model: ${e.message}`);
  }
}

// ------------------------------------------------------------------ rendering
function render(result) {
  state.faces = result.faces || [];
  state.width = result.image.width;
  state.height = result.image.height;
  if (state.selected >= state.faces.length) state.selected = 0;
  renderBoxes();
  renderFaces();
  renderChart();
}

function renderBoxes() {
  const overlay = $("overlay");
  overlay.replaceChildren();
  state.faces.forEach((f, i) => {
    const [x, y, w, h] = f.box;
    const c = colour(f.label);
    const box = document.createElement("div");
    box.className = "box face-box" + (i === state.selected ? " selected" : "") + (y < state.height * 0.06 ? " tag-below" : "");
    box.style.left = `${(100 * x) / state.width}%`;
    box.style.top = `${(100 * y) / state.height}%`;
    box.style.width = `${(100 * w) / state.width}%`;
    box.style.height = `${(100 * h) / state.height}%`;
    box.style.setProperty("--c", c.css);
    box.style.setProperty("--tc", c.text);
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = `${f.label} ${pct(f.score)}`;
    box.append(tag);
    box.addEventListener("click", () => select(i));
    overlay.append(box);
  });
}

function renderFaces() {
  const list = $("faces");
  list.replaceChildren();
  $("face-count").textContent = state.faces.length ? `${state.faces.length}` : "";
  if (!state.faces.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No face found in this image.";
    list.append(li);
    return;
  }
  state.faces.forEach((f, i) => {
    const ranked = Object.entries(f.scores).sort((a, b) => b[1] - a[1]);
    const li = document.createElement("li");
    li.className = "face" + (i === state.selected ? " selected" : "");
    li.style.setProperty("--c", colour(f.label).css);
    const dot = document.createElement("span"); dot.className = "dot";
    const label = document.createElement("span"); label.className = "face-label"; label.textContent = f.label;
    if (ranked.length > 1) {
      const s = document.createElement("small");
      s.textContent = `then ${ranked[1][0]} ${pct(ranked[1][1])}`;
      label.append(s);
    }
    const score = document.createElement("span"); score.className = "face-score"; score.textContent = pct(f.score);
    li.append(dot, label, score);
    li.title = `face ${i + 1}: box ${f.box.join(", ")}`;
    li.addEventListener("click", () => select(i));
    list.append(li);
  });
}

function renderChart() {
  const chart = $("chart");
  chart.replaceChildren();
  const face = state.faces[state.selected];
  const fig = $("explain-fig");
  if (!face) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "Select a face to see how sure the model is about each emotion.";
    chart.append(p);
    $("chart-title").textContent = "";
    fig.hidden = true;
    return;
  }
  $("chart-title").textContent = state.faces.length > 1 ? `face ${state.selected + 1}` : "";
  const labels = state.model ? state.model.labels : Object.keys(face.scores);
  for (const lab of labels) {
    const p = face.scores[lab] || 0;
    const row = document.createElement("div");
    row.className = "bar-row" + (lab === face.label ? " top" : "");
    const name = document.createElement("span"); name.className = "bar-name"; name.textContent = lab;
    const track = document.createElement("div"); track.className = "bar-track";
    const bar = document.createElement("div"); bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    bar.style.setProperty("--c", colour(lab).css);
    track.append(bar);
    const val = document.createElement("span"); val.className = "bar-val"; val.textContent = pct(p);
    row.append(name, track, val);
    chart.append(row);
  }
  if (face.explanation) {
    $("explain-img").src = face.explanation.overlay;
    const how = face.explanation.method ? `${face.explanation.method} map, ` : "";
    $("explain-cap").textContent = `Regions that drove “${face.explanation.label}” (${how}red = most).`;
    fig.hidden = false;
  } else {
    fig.hidden = true;
  }
}

function select(i) {
  state.selected = i;
  renderBoxes();
  renderFaces();
  renderChart();
}

// ------------------------------------------------------------------ photo mode
function predictUrl() {
  return `/v1/predict${$("explain-toggle").checked ? "?explain=true" : ""}`;
}

async function predictFile(file) {
  if (!file) return;
  stopWebcam();
  showError("");
  const url = URL.createObjectURL(file);
  const photo = $("photo");
  photo.onload = () => URL.revokeObjectURL(url);
  photo.src = url;
  photo.hidden = false;
  $("video").hidden = true;
  $("dropzone").hidden = true;
  $("media").hidden = false;
  $("stage").classList.add("has-media");
  $("overlay").replaceChildren();
  state.selected = 0;
  setStatus("recognising…");
  const t0 = performance.now();
  const here = state.engine === "browser";
  try {
    let result;
    if (here) {
      const rec = await browserRecognizer();
      const t1 = performance.now();
      result = await rec.recognise(file, { name: file.name || "image" });
      result.time_ms = performance.now() - t1;
    } else {
      const form = new FormData();
      form.append("file", file, file.name || "image");
      result = await api(predictUrl(), { method: "POST", body: form });
    }
    render(result);
    const n = result.faces.length;
    setStatus(`${n} face${n === 1 ? "" : "s"} · ${result.image.width}×${result.image.height} · ` +
      `${Math.round(performance.now() - t0)} ms${here ? " · in this browser" : ""}`);
    lastFile = file;
  } catch (e) {
    clearPhoto(); // the error only: no broken image, no "No face found" for a picture that was not read
    if (e.status === 401) lastFile = file; // sent again once the key is given
    setStatus("");
    showError(e.message);
  }
}
let lastFile = null;

function clearPhoto() {
  state.faces = [];
  state.selected = 0;
  lastFile = null;
  $("overlay").replaceChildren();
  $("photo").removeAttribute("src");
  $("photo").hidden = true;
  $("media").hidden = true;
  $("dropzone").hidden = false;
  $("stage").classList.remove("has-media");
  $("face-count").textContent = "";
  const li = document.createElement("li");
  li.className = "muted";
  li.textContent = "No image yet.";
  $("faces").replaceChildren(li);
  renderChart();
}

// ------------------------------------------------------------------ webcam mode
// Live video asks for the fast detector (upright faces, several frames/s); photos use the server's default.
const LIVE_DETECTOR = "centerface-fast";

function liveDetector() {
  return state.model && (state.model.detectors || []).includes(LIVE_DETECTOR) ? LIVE_DETECTOR : "";
}

function liveUrl() {
  const url = predictUrl();
  return liveDetector() ? `${url}${url.includes("?") ? "&" : "?"}detector=${liveDetector()}` : url;
}

async function startWebcam() {
  showError("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser gives no camera access here. Browsers allow the webcam only on secure (HTTPS) pages " +
      "or on localhost / 127.0.0.1 (plain http).");
    setMode("upload");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 960 } }, audio: false });
  } catch (e) {
    showError(`No webcam: ${e.message || e.name}`);
    setMode("upload");
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  video.hidden = false;
  $("photo").hidden = true;
  $("dropzone").hidden = true;
  $("media").hidden = false;
  $("stage").classList.add("has-media");
  state.live = true;
  if (state.engine === "browser") browserLive(); else liveLoop();
}

async function browserLive() {
  let rec;
  try {
    rec = await browserRecognizer();
  } catch (e) {
    showError(e.message);
    return;
  }
  if (!state.live) return;
  state.liveCtl = rec.live($("video"), (r) => {
    if (!state.live) return;
    render({ faces: r.faces, image: { width: r.width, height: r.height } });
    showError("");
    if (r.fps) setStatus(`live · ${r.fps.toFixed(1)} frames/s · in this browser`);
  }, { onError: (e) => showError(e.message) });
}

function stopWebcam() {
  state.live = false;
  if (state.liveCtl) { state.liveCtl.stop(); state.liveCtl = null; }
  if (state.stream) {
    for (const t of state.stream.getTracks()) t.stop();
    state.stream = null;
  }
  $("video").hidden = true;
}

async function liveLoop() {
  const video = $("video");
  const canvas = $("grab");
  let frames = 0;
  let since = performance.now();
  while (state.live) {
    if (video.readyState < 2 || !video.videoWidth) { await new Promise((r) => setTimeout(r, 50)); continue; }
    const scale = Math.min(1, 640 / video.videoWidth);
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.8));
    try {
      const result = await api(liveUrl(), { method: "POST", body: blob, headers: { "Content-Type": "image/jpeg" } });
      if (!state.live) break;
      render(result); // boxes are in the frame's pixels; the overlay scales them to the video
      showError("");
    } catch (e) {
      showError(e.message);
      await new Promise((r) => setTimeout(r, 1000));
    }
    frames += 1;
    const dt = (performance.now() - since) / 1000;
    if (dt >= 1) { setStatus(`live · ${(frames / dt).toFixed(1)} frames/s`); frames = 0; since = performance.now(); }
  }
}

function setMode(mode) {
  state.mode = mode;
  $("mode-upload").classList.toggle("active", mode === "upload");
  $("mode-webcam").classList.toggle("active", mode === "webcam");
  $("mode-upload").setAttribute("aria-selected", String(mode === "upload"));
  $("mode-webcam").setAttribute("aria-selected", String(mode === "webcam"));
  $("choose-label").hidden = mode !== "upload";
  if (mode === "webcam") {
    startWebcam();
  } else {
    stopWebcam();
    setStatus("");
    if (!$("photo").getAttribute("src")) {
      $("media").hidden = true; $("dropzone").hidden = false; $("stage").classList.remove("has-media");
    } else {
      $("photo").hidden = false;
      if (lastFile) predictFile(lastFile); // the overlay showed webcam faces
    }
  }
}

// ------------------------------------------------------------------ wiring
function init() {
  $("file-input").addEventListener("change", (e) => predictFile(e.target.files[0]));
  $("mode-upload").addEventListener("click", () => setMode("upload"));
  $("mode-webcam").addEventListener("click", () => setMode("webcam"));
  $("explain-toggle").addEventListener("change", () => { if (state.mode === "upload" && lastFile) predictFile(lastFile); });
  $("engine-toggle").addEventListener("change", (e) => {
    setEngine(e.target.checked ? "browser" : "server");
    if (state.engine === "browser") browserRecognizer().catch((err) => showError(err.message));
    if (state.mode === "webcam") { stopWebcam(); startWebcam(); } else if (lastFile) predictFile(lastFile);
  });
  if (STATIC_SITE) {
    $("docs-link").hidden = true;
    $("key-row").hidden = true;
  }
  setEngine(state.engine);
  $("api-key-save").addEventListener("click", () => {
    state.key = $("api-key").value.trim();
    sessionStorage.setItem("emolens-key", state.key);
    $("key-row").hidden = true;
    showError("");
    loadModel();
    if (lastFile) predictFile(lastFile);
  });
  const stage = $("stage");
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("drag"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("drag"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("drag");
    if (e.dataTransfer.files.length) { if (state.mode !== "upload") setMode("upload"); predictFile(e.dataTransfer.files[0]); }
  });
  $("dropzone").addEventListener("click", () => $("file-input").click());
  window.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData || {}).files || []][0];
    if (item) { if (state.mode !== "upload") setMode("upload"); predictFile(item); }
  });
  loadModel();
}

init();
