// The emotion model in the browser: emolens.classify + the crop of emolens.recognizer / align, step for step.
// Everything model-specific comes from the model's metadata (labels, input size, channels, normalisation, test-time
// views, temperature, logit bias, crop margin, landmark template).
import { cropFace, INTER_AREA, INTER_LINEAR, pyRound, resize, toGray, toRGB, warpAffine } from "./image.mjs";

export const ALIGN_MODES = ["none", "level", "template"];

/** Where FER2013 training faces have their landmarks (emolens.align.FER2013_TEMPLATE), for a model whose metadata
 * has no landmark_template. */
export const FER2013_TEMPLATE = [[0.3151, 0.4101], [0.6849, 0.4101], [0.5, 0.6048], [0.3525, 0.7457], [0.6475, 0.7457]];

export class Classifier {
  /** session: an onnxruntime-web InferenceSession of an emolens model; meta: its parsed metadata (meta.mjs). */
  constructor(session, ort, meta, { tta = true, maxBatch = 32, cropMaxSide = 1024, alignMaxSide = 256 } = {}) {
    this.session = session;
    this.ort = ort;
    this.meta = tta ? meta : { ...meta, tta_hflip: false, tta_scales: [1.0] };
    this.maxBatch = maxBatch;
    this.cropMaxSide = cropMaxSide;
    this.alignMaxSide = alignMaxSide;
  }

  get labels() { return [...this.meta.labels]; }

  /** Crops (RGBA/RGB/gray images of any size) → the float32 N×C×S×S input (emolens.classify.preprocess). */
  preprocess(crops) {
    const m = this.meta, size = m.input_size, C = m.channels, plane = size * size;
    const x = new Float32Array(crops.length * C * plane);
    for (let n = 0; n < crops.length; n++) {
      let img = C === 1 ? toGray(crops[n]) : toRGB(crops[n]);
      if (img.width !== size || img.height !== size) {
        const interp = Math.min(img.width, img.height) > size ? INTER_AREA : INTER_LINEAR;
        img = resize(img, size, size, interp);
      }
      const d = img.data;
      for (let c = 0; c < C; c++) {
        const mean = Math.fround(m.meanArray[c]), std = Math.fround(m.stdArray[c]), o = (n * C + c) * plane;
        for (let i = 0; i < plane; i++) x[o + i] = Math.fround(Math.fround(d[i * C + c] / 255) - mean) / std;
      }
    }
    return x;
  }

  /** Probabilities, one Float32Array per crop: each view softmax(z / temperature + bias), averaged over the
   * crop and, with tta_hflip, its mirror image; at most maxBatch crops a call. */
  async predictProba(crops) {
    const out = [];
    for (let i = 0; i < crops.length; i += this.maxBatch) {
      out.push(...(await this.probabilities(this.preprocess(crops.slice(i, i + this.maxBatch)), Math.min(this.maxBatch, crops.length - i))));
    }
    return out;
  }

  async probabilities(x, n) {
    const m = this.meta, size = m.input_size, C = m.channels;
    let input = x, views = 1;
    if (m.tta_hflip) {
      views = 2;
      input = new Float32Array(2 * x.length);
      input.set(x);
      for (let r = 0; r < n * C * size; r++) {
        const o = r * size;
        for (let c = 0; c < size; c++) input[x.length + o + c] = x[o + size - 1 - c];
      }
    }
    const feeds = { [this.session.inputNames[0]]: new this.ort.Tensor("float32", input, [views * n, C, size, size]) };
    const res = await this.session.run(feeds);
    const t = res[this.session.outputNames[0]];
    const z = t.data, K = m.labels.length;
    if (z.length !== views * n * K) throw new Error(`the model gave ${z.length / (views * n)} outputs for ${K} labels`);
    const probs = [];
    for (let i = 0; i < n; i++) {
      const p = new Float64Array(K);
      for (let v = 0; v < views; v++) {
        const row = (v * n + i) * K, e = new Float64Array(K);
        let max = -Infinity;
        for (let k = 0; k < K; k++) {
          e[k] = z[row + k] / m.temperature + (m.logit_bias ? m.logit_bias[k] : 0);
          if (e[k] > max) max = e[k];
        }
        let s = 0;
        for (let k = 0; k < K; k++) { e[k] = Math.exp(e[k] - max); s += e[k]; }
        for (let k = 0; k < K; k++) p[k] += e[k] / s / views;
      }
      probs.push(Float32Array.from(p));
    }
    for (const v of Object.values(res)) v.dispose?.();
    return probs;
  }

  /** The crops classified for the boxes: per box, one per tta_scales entry (emolens.recognizer.view_crops). */
  viewCrops(img, boxes, { cropMargin = this.meta.crop_margin, align = "none" } = {}) {
    const m = this.meta, base = 1 + 2 * cropMargin, crops = [];
    for (const b of boxes) {
      for (const s of m.tta_scales) crops.push(this.alignedCrop(img, b, base * s, align));
    }
    return crops;
  }

  alignedCrop(img, box, scale, mode) {
    if (mode === "none" || !box.landmarks) return cropFace(img, box.asList(), scale, this.cropMaxSide);
    const side = Math.trunc(Math.min(this.alignMaxSide, Math.max(this.meta.input_size, pyRound(Math.max(box.w, box.h) * scale))));
    const matrix = mode === "level" ? levelMatrix(box, scale, side)
      : templateMatrix(box.landmarks, this.meta.landmark_template || FER2013_TEMPLATE, scale, side);
    return warpAffine(img, matrix, side, side);
  }

  /** Faces for the boxes: every label's probability averaged over the views (emolens.recognizer.classify_boxes). */
  async classifyBoxes(img, boxes, options = {}) {
    if (!boxes.length) return [];
    const crops = this.viewCrops(img, boxes, options);
    const probs = await this.predictProba(crops);
    const per = crops.length / boxes.length, labels = this.meta.labels, faces = [];
    boxes.forEach((box, i) => {
      const p = new Float32Array(labels.length);
      for (let v = 0; v < per; v++) for (let k = 0; k < labels.length; k++) p[k] += probs[i * per + v][k] / per;
      let best = 0;
      for (let k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
      const scores = {};
      labels.forEach((lab, k) => { scores[lab] = p[k]; });
      faces.push(face(box, labels[best], p[best], scores));
    });
    return faces;
  }
}

/** A face as the Python API gives it (emolens.Face.to_dict, unrounded): box, label, score, scores, landmarks. */
export function face(box, label, score, scores) {
  const f = { box: box.asList(), label, score, scores };
  if (box.landmarks) f.landmarks = box.landmarks.map(([x, y]) => [x, y]);
  Object.defineProperty(f, "detection", { value: box, enumerable: false });
  return f;
}

function eyeAngle(marks) {
  const [[lx, ly], [rx, ry]] = marks;
  return (Math.atan2(ry - ly, rx - lx) * 180) / Math.PI;
}

/** emolens.align.level_matrix: cv2.getRotationMatrix2D about the box centre, eyes level, moved into the crop. */
export function levelMatrix(box, scale, side) {
  const cx = box.x + box.w / 2, cy = box.y + box.h / 2;
  const srcSide = Math.max(box.w, box.h) * scale;
  const angle = (eyeAngle(box.landmarks) * Math.PI) / 180, k = side / srcSide;
  const a = Math.cos(angle) * k, b = Math.sin(angle) * k;
  return [[a, b, (1 - a) * cx - b * cy + side / 2 - cx], [-b, a, b * cx + (1 - a) * cy + side / 2 - cy]];
}

/** emolens.align.template_matrix: the least-squares similarity taking the landmarks onto the template. */
export function templateMatrix(marks, template, scale, side) {
  const dst = template.map(([x, y]) => [((x - 0.5) / scale + 0.5) * side, ((y - 0.5) / scale + 0.5) * side]);
  const mean = (pts) => [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
  const ms = mean(marks), md = mean(dst);
  let a = 0, b = 0, norm = 0;
  marks.forEach(([x, y], i) => {
    const sx = x - ms[0], sy = y - ms[1], dx = dst[i][0] - md[0], dy = dst[i][1] - md[1];
    a += sx * dx + sy * dy; b += sx * dy - sy * dx; norm += sx * sx + sy * sy;
  });
  norm = norm || 1;
  const c = a / norm, k = b / norm;
  return [[c, -k, md[0] - (c * ms[0] - k * ms[1])], [k, c, md[1] - (k * ms[0] + c * ms[1])]];
}
