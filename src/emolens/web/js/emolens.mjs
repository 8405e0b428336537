// emolens in the browser: find every face in a picture, a canvas, a video frame or a webcam stream and classify its
// emotion with the same ONNX models as the Python package, on onnxruntime-web (WebAssembly). Nothing leaves the page.
//
//   import { load } from "./web/emolens.mjs";
//   const rec = await load("models/manifest.json");          // the manifest `emolens web export` writes
//   const faces = await rec.predict(fileInput.files[0]);     // [{box, label, score, scores, landmarks}]
//   const live = rec.live(videoElement, (r) => draw(r.faces)); // tracked, smoothed faces; live.stop()
//
// Faces are what the Python API gives (emolens.Face.to_dict, unrounded): box [x, y, w, h] in the picture's pixels,
// label, score, scores {label: probability}, landmarks [[x, y] × 5]. Live faces also carry id, raw_scores, missed.
import * as ort from "./ort/ort.wasm.min.mjs";
import { CenterFace } from "./centerface.mjs";
import { ALIGN_MODES, Classifier } from "./classify.mjs";
import { ImageError, naturalSize, pixelsOf, readImage } from "./decode.mjs";
import { Box } from "./box.mjs";
import { META_KEY, ModelError, onnxMetadata, parseMeta } from "./meta.mjs";
import { FrameTracker } from "./track.mjs";

export { Box, ImageError, ModelError, ort, readImage };
export { FrameTracker, IoUTracker, EmaSmoother } from "./track.mjs";
export * as image from "./image.mjs";
export { onnxMetadata, parseMeta } from "./meta.mjs";

export const VERSION = "1";

let ortReady = false;

/** onnxruntime-web's settings, once: its files from ./ort/ beside this module (never another origin), threads only
 * where the page is cross-origin isolated (SharedArrayBuffer), else one. */
export function configureRuntime({ numThreads } = {}) {
  if (ortReady) return ort;
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  const isolated = typeof crossOriginIsolated !== "undefined" && crossOriginIsolated;
  const cores = (typeof navigator !== "undefined" && navigator.hardwareConcurrency) || 1;
  ort.env.wasm.numThreads = numThreads || (isolated ? Math.min(4, cores) : 1);
  ort.env.logLevel = "error";
  ortReady = true;
  return ort;
}

async function fetchBytes(url, { headers, onProgress, what } = {}) {
  let res;
  try {
    res = await fetch(url, { headers });
  } catch (e) {
    throw new ModelError(`${url}: cannot fetch (${e.message})`);
  }
  if (!res.ok) throw new ModelError(`${url}: cannot fetch (HTTP ${res.status})`);
  const total = Number(res.headers.get("Content-Length")) || 0;
  if (!res.body || !onProgress) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader(), parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value); got += value.length;
    onProgress({ what, loaded: got, total });
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function checkDigest(bytes, expected, url) {
  if (!expected || typeof crypto === "undefined" || !crypto.subtle) return; // digests need a secure context
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== expected) throw new ModelError(`${url}: the file is not the one the manifest names (sha256 ${hex.slice(0, 12)}…, expected ${expected.slice(0, 12)}…)`);
}

async function session(bytes, url) {
  try {
    return await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  } catch (e) {
    throw new ModelError(`${url}: cannot load as an ONNX model (${String(e.message || e).split("\n")[0]})`);
  }
}

/** Load what a manifest names (emolens.web.site writes it: the emotion model, the detectors, their settings) and
 * return a Recognizer. Options: headers (e.g. {"X-API-Key": k}), detector / liveDetector (names in the manifest),
 * tta (false: one view a face), align ("none" | "level" | "template"), numThreads, onProgress({what, loaded, total}). */
export async function load(manifestUrl, options = {}) {
  configureRuntime(options);
  const base = new URL(manifestUrl, typeof location !== "undefined" ? location.href : undefined);
  const manifest = JSON.parse(new TextDecoder().decode(await fetchBytes(base, { headers: options.headers })));
  return Recognizer.fromManifest(manifest, base, options);
}

export class Recognizer {
  constructor({ classifier, detectors, detector, liveDetector, manifest, align, cropMargin }) {
    this.classifier = classifier;
    this.detectors = detectors;
    this.detector = detectors[detector];
    this.liveDetector = detectors[liveDetector] || this.detector;
    this.manifest = manifest;
    this.align = align;
    this.cropMargin = cropMargin;
    this.maxPixels = (manifest.limits && manifest.limits.max_pixels) || 40_000_000;
  }

  static async fromManifest(manifest, base, options = {}) {
    configureRuntime(options);
    const t0 = performance.now();
    const model = manifest.model;
    const modelUrl = new URL(model.file, base);
    const detNames = Object.keys(manifest.detectors);
    const files = new Map(); // detectors may share one file (centerface and centerface-fast)
    for (const name of detNames) files.set(manifest.detectors[name].file, manifest.detectors[name]);
    const fetchOne = async (url, entry, what) => {
      const bytes = await fetchBytes(url, { headers: options.headers, onProgress: options.onProgress, what });
      await checkDigest(bytes, entry.sha256, url);
      return bytes;
    };
    const [modelBytes, ...detBytes] = await Promise.all([
      fetchOne(modelUrl, model, "model"),
      ...[...files.entries()].map(([file, entry]) => fetchOne(new URL(file, base), entry, "detector")),
    ]);
    const props = onnxMetadata(modelBytes);
    const metaJson = props[META_KEY] || model.meta;
    if (!metaJson) throw new ModelError(`${modelUrl}: not an emolens model (no '${META_KEY}' metadata); export it with \`emolens export\``);
    let meta;
    try {
      meta = parseMeta(metaJson);
    } catch (e) {
      throw new ModelError(`${modelUrl}: invalid emolens metadata: ${e.message.replace(/^model metadata: /, "")}`);
    }
    const classifier = new Classifier(await session(modelBytes, modelUrl), ort, meta, {
      tta: options.tta !== false, maxBatch: manifest.max_batch || 32, cropMaxSide: manifest.crop_max_side || 1024,
      alignMaxSide: manifest.align_max_side || 256,
    });
    const sessions = new Map();
    let i = 0;
    for (const [file] of files) sessions.set(file, await session(detBytes[i++], new URL(file, base)));
    const detectors = {};
    for (const name of detNames) {
      const entry = manifest.detectors[name];
      detectors[name] = new CenterFace(sessions.get(entry.file), ort, { ...entry.options, name });
    }
    const detector = options.detector || manifest.detector;
    const liveDetector = options.liveDetector || manifest.live_detector || detector;
    for (const d of [detector, liveDetector]) {
      if (!detectors[d]) throw new ModelError(`unknown detector '${d}'; this manifest has: ${detNames.join(", ")}`);
    }
    const align = options.align || manifest.align || "none";
    if (!ALIGN_MODES.includes(align)) throw new ModelError(`unknown alignment '${align}'; choose one of: ${ALIGN_MODES.join(", ")}`);
    const rec = new Recognizer({
      classifier, detectors, detector, liveDetector, manifest, align,
      cropMargin: options.cropMargin ?? meta.crop_margin,
    });
    rec.loadMs = performance.now() - t0;
    return rec;
  }

  get labels() { return this.classifier.labels; }

  get meta() { return this.classifier.meta; }

  get cropOptions() { return { cropMargin: this.cropMargin, align: this.align }; }

  /** Faces in a picture, largest first. input: a File/Blob/ArrayBuffer (checked and decoded as the server does), an
   * <img>, <canvas>, <video>, ImageBitmap, ImageData or an image {width, height, channels, data}. detect: false takes
   * the whole picture as one face crop. detector: a detector name of the manifest for this call. */
  async predict(input, { detect = true, detector, name } = {}) {
    const img = await readImage(input, { maxPixels: this.maxPixels, name });
    return this.predictImage(img, { detect, detector });
  }

  /** What the server's POST /v1/predict answers, made here: {image: {name, width, height}, faces_found, faces,
   * time_ms}. A picture that cannot be read throws an ImageError with the server's one-line message. */
  async recognise(input, { detect = true, detector, name } = {}) {
    const t0 = performance.now();
    const img = await readImage(input, { maxPixels: this.maxPixels, name });
    const faces = await this.predictImage(img, { detect, detector });
    return { image: { name: name || input.name || "<image>", width: img.width, height: img.height },
      faces_found: faces.length, faces, time_ms: performance.now() - t0 };
  }

  async predictImage(img, { detect = true, detector } = {}) {
    const boxes = await this.faceBoxes(img, { detect, detector });
    return this.classifier.classifyBoxes(img, boxes, this.cropOptions);
  }

  async faceBoxes(img, { detect = true, detector } = {}) {
    if (!detect) return [new Box(0, 0, img.width, img.height)];
    const d = detector ? this.detectors[detector] : this.detector;
    if (!d) throw new ModelError(`unknown detector '${detector}'; this manifest has: ${Object.keys(this.detectors).join(", ")}`);
    return d.detect(img);
  }

  /** A FrameTracker (ids, smoothing) on the live detector; options as emolens.video.frames.FrameTracker's. */
  tracker(options = {}) {
    return new FrameTracker(this, { ...(this.manifest.tracking || {}), ...options });
  }

  /** Run live on a <video> (a webcam stream or a file): frames one after another, each scaled to at most maxWidth
   * pixels wide, tracked and smoothed; onResult({faces, width, height, time_s, fps}) after each. Returns
   * {stop(), running}. */
  live(video, onResult, { maxWidth, onError, ...options } = {}) {
    const tracker = this.tracker(options);
    const width = maxWidth || (this.manifest.tracking && this.manifest.tracking.live_max_width) || 640;
    const ctl = { running: true, stop() { this.running = false; } };
    const t0 = performance.now();
    let frames = 0, since = performance.now(), fps = 0;
    const step = async () => {
      while (ctl.running) {
        const [vw, vh] = naturalSize(video);
        if (video.readyState < 2 || !vw) { await new Promise((r) => setTimeout(r, 30)); continue; }
        const scale = Math.min(1, width / vw);
        const w = Math.round(vw * scale), h = Math.round(vh * scale);
        try {
          const result = await tracker.process(pixelsOf(video, w, h), (performance.now() - t0) / 1000);
          frames += 1;
          const dt = (performance.now() - since) / 1000;
          if (dt >= 1) { fps = frames / dt; frames = 0; since = performance.now(); }
          if (ctl.running) onResult({ ...result, width: w, height: h, fps });
        } catch (e) {
          if (onError) onError(e); else throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
        await new Promise((r) => setTimeout(r, 0)); // let the page paint
      }
    };
    ctl.done = step();
    return ctl;
  }
}
