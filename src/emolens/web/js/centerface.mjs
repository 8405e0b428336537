// CenterFace in the browser: emolens.detect.centerface.CenterFaceDetector step for step (the same search sizes,
// grey canvas, thresholds, non-maximum suppression, retries with a grey border, the same rounding), on
// onnxruntime-web. Its settings come from the manifest the Python side writes (emolens.web.site).
import { Box, stableSortBy } from "./box.mjs";
import { INTER_AREA, INTER_LINEAR, pyRound, resize } from "./image.mjs";

const f32 = Math.fround;

/** The settings of emolens' CenterFaceDetector (the manifest gives each detector's own). */
export const CENTERFACE_DEFAULTS = {
  threshold: 0.5, nms: 0.3, max_side: 640, min_size_px: 8, retry_pads: [0.25, 0.5], retry_side: 256, grid: 32,
};

export class CenterFace {
  /** session: an onnxruntime-web InferenceSession of centerface.onnx; ort: the onnxruntime-web module. */
  constructor(session, ort, options = {}) {
    this.session = session;
    this.ort = ort;
    this.name = options.name || "centerface";
    this.options = { ...CENTERFACE_DEFAULTS, ...options };
  }

  /** Faces in an image ({width, height, channels, data}, RGBA or RGB), largest first. */
  async detect(img) {
    if (Math.min(img.width, img.height) < 1) return [];
    let boxes = await this.search(img, 0, 0);
    for (const pad of this.options.retry_pads) {
      if (boxes.length) break;
      boxes = await this.search(img, pad, this.options.retry_side);
    }
    return boxes;
  }

  async search(img, pad, minSide) {
    const o = this.options, grid = o.grid;
    const { width: w, height: h, channels: cn } = img;
    const p = pyRound(pad * Math.max(h, w));
    const ph = h + 2 * p, pw = w + 2 * p;
    const scale = Math.min(o.max_side / Math.max(ph, pw), Math.max(1.0, minSide / Math.max(ph, pw)));
    const sw = Math.max(1, pyRound(w * scale)), sh = Math.max(1, pyRound(h * scale));
    const sp = pyRound(p * scale);
    const small = sw === w && sh === h ? img : resize(img, sw, sh, scale < 1 ? INTER_AREA : INTER_LINEAR);
    const cw = Math.ceil((sw + 2 * sp) / grid) * grid, ch = Math.ceil((sh + 2 * sp) / grid) * grid;
    const plane = cw * ch;
    const x = new Float32Array(3 * plane).fill(128);
    const d = small.data;
    for (let yy = 0; yy < sh; yy++) {
      let i = (yy * sw) * cn, o0 = (yy + sp) * cw + sp;
      for (let xx = 0; xx < sw; xx++, i += cn, o0++) {
        x[o0] = d[i]; x[plane + o0] = d[i + 1]; x[2 * plane + o0] = d[i + 2]; // RGB, 0..255, as it was trained
      }
    }
    const feeds = { [this.session.inputNames[0]]: new this.ort.Tensor("float32", x, [1, 3, ch, cw]) };
    const out = await this.session.run(feeds);
    const [heat, size, offset, marks] = this.session.outputNames.map((n) => out[n]);
    const gh = heat.dims[2], gw = heat.dims[3], g = gh * gw;
    const H = heat.data, S = size.data, O = offset.data, L = marks.data;
    const cand = [];
    for (let k = 0; k < g; k++) if (H[k] > o.threshold) cand.push(k);
    for (const t of [heat, size, offset, marks]) t.dispose?.();
    if (!cand.length) return [];
    const n = cand.length;
    const x0 = new Float64Array(n), y0 = new Float64Array(n), bw = new Float64Array(n), bh = new Float64Array(n);
    const score = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const k = cand[j], ys = Math.floor(k / gw), xs = k % gw;
      score[j] = H[k];
      bh[j] = f32(f32(Math.exp(S[k])) * 4);
      bw[j] = f32(f32(Math.exp(S[g + k])) * 4);
      const cx = (xs + O[g + k] + 0.5) * 4, cy = (ys + O[k] + 0.5) * 4;
      x0[j] = cx - bw[j] / 2; y0[j] = cy - bh[j] / 2;
    }
    const keep = nmsBoxes(x0, y0, bw, bh, score, o.threshold, o.nms);
    const found = [];
    for (const i of keep) {
      // back to the original picture: remove the border, undo the scale, clip to the picture
      const bx0 = (x0[i] - sp) / scale, by0 = (y0[i] - sp) / scale;
      const bx1 = bx0 + bw[i] / scale, by1 = by0 + bh[i] / scale;
      const ix0 = Math.max(0, pyRound(bx0)), iy0 = Math.max(0, pyRound(by0));
      const ix1 = Math.min(w, pyRound(bx1)), iy1 = Math.min(h, pyRound(by1));
      if (ix1 - ix0 < o.min_size_px || iy1 - iy0 < o.min_size_px) continue;
      // a face must be mostly inside the picture (the border lets cut faces be found, not phantom ones)
      if ((ix1 - ix0) * (iy1 - iy0) < 0.4 * (bx1 - bx0) * (by1 - by0)) continue;
      const k = cand[i], points = [];
      for (let m = 0; m < 5; m++) {
        const ly = f32(L[(2 * m) * g + k] * bh[i]) + y0[i], lx = f32(L[(2 * m + 1) * g + k] * bw[i]) + x0[i];
        points.push([(lx - sp) / scale, (ly - sp) / scale]);
      }
      found.push(new Box(ix0, iy0, ix1 - ix0, iy1 - iy0, score[i], points));
    }
    return stableSortBy(found, (b) => -b.area);
  }
}

/** cv2.dnn.NMSBoxes on float boxes: by score (stable), a box is kept when its overlap with every kept box is at
 * most the threshold (OpenCV's Rect2d overlap, compared in float32). */
export function nmsBoxes(x0, y0, w, h, score, scoreThreshold, nmsThreshold) {
  const order = [];
  for (let i = 0; i < score.length; i++) if (score[i] > f32(scoreThreshold)) order.push(i);
  order.sort((a, b) => score[b] - score[a] || a - b);
  const thr = f32(nmsThreshold), kept = [];
  for (const i of order) {
    let keep = true;
    for (let k = 0; k < kept.length && keep; k++) keep = overlap(i, kept[k]) <= thr;
    if (keep) kept.push(i);
  }
  return kept;

  function overlap(a, b) {
    const areaA = w[a] * h[a], areaB = w[b] * h[b];
    if (areaA + areaB <= Number.EPSILON) return f32(1);
    let inter = 0;
    if (w[a] > 0 && h[a] > 0 && w[b] > 0 && h[b] > 0) {
      const iw = Math.min(x0[a] + w[a], x0[b] + w[b]) - Math.max(x0[a], x0[b]);
      const ih = Math.min(y0[a] + h[a], y0[b] + h[b]) - Math.max(y0[a], y0[b]);
      inter = iw > 0 && ih > 0 ? iw * ih : 0;
    }
    return f32(1 - f32(1 - inter / (areaA + areaB - inter)));
  }
}
