// Faces followed from frame to frame, their emotions smoothed: emolens.track (IoUTracker, EmaSmoother) and the
// per-frame work of emolens.video.frames.FrameTracker, step for step, so live mode in the browser labels and
// smooths as `emolens video` / `emolens webcam` do.
import { Box, mergeOverlapping, stableSortBy } from "./box.mjs";
import { cropReplicate, pyRound } from "./image.mjs";
import { face } from "./classify.mjs";

const centre = (b) => [b.x + b.w / 2, b.y + b.h / 2];

class Track {
  constructor(id, box) { this.id = id; this.box = box; this.vx = 0; this.vy = 0; this.hits = 1; this.missed = 0; }

  predicted() {
    const k = this.missed + 1;
    return this.box.movedTo(pyRound(this.box.x + this.vx * k), pyRound(this.box.y + this.vy * k), this.box.w, this.box.h);
  }
}

/** emolens.track.IoUTracker: stable ids by overlap with the predicted boxes, then by centre distance. */
export class IoUTracker {
  constructor({ iou_threshold = 0.3, max_distance = 0.6, max_missed = 10, velocity = 0.5 } = {}) {
    this.iouThreshold = iou_threshold; this.maxDistance = max_distance; this.maxMissed = max_missed;
    this.velocity = velocity; this.tracks = []; this.nextId = 1;
  }

  ids() { return this.tracks.map((t) => t.id); }

  reset() { this.tracks = []; }

  update(boxes) {
    const preds = this.tracks.map((t) => t.predicted());
    const assigned = new Array(boxes.length).fill(null);
    const freeT = new Set(this.tracks.map((_, i) => i)), freeB = new Set(boxes.map((_, i) => i));
    const pairs = [];
    preds.forEach((p, ti) => boxes.forEach((b, bi) => pairs.push([b.iou(p), ti, bi, pairs.length])));
    pairs.sort((a, b) => b[0] - a[0] || a[3] - b[3]);
    for (const [score, ti, bi] of pairs) {
      if (score < this.iouThreshold) break;
      if (freeT.has(ti) && freeB.has(bi)) {
        this.match(ti, boxes[bi]); assigned[bi] = this.tracks[ti].id; freeT.delete(ti); freeB.delete(bi);
      }
    }
    const dists = [];
    for (const ti of [...freeT].sort((a, b) => a - b)) {
      const p = preds[ti], [px, py] = centre(p);
      for (const bi of [...freeB].sort((a, b) => a - b)) {
        const b = boxes[bi], [bx, by] = centre(b);
        const d = Math.hypot(px - bx, py - by) / Math.max(1, (p.w + p.h + b.w + b.h) / 4);
        const ratio = Math.max(b.w, p.w) / Math.max(1, Math.min(b.w, p.w));
        if (d <= this.maxDistance && ratio <= 2) dists.push([d, ti, bi]);
      }
    }
    dists.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    for (const [, ti, bi] of dists) {
      if (freeT.has(ti) && freeB.has(bi)) {
        this.match(ti, boxes[bi]); assigned[bi] = this.tracks[ti].id; freeT.delete(ti); freeB.delete(bi);
      }
    }
    for (const ti of freeT) this.tracks[ti].missed += 1;
    this.tracks = this.tracks.filter((t) => t.missed <= this.maxMissed);
    for (const bi of [...freeB].sort((a, b) => a - b)) {
      const t = new Track(this.nextId++, boxes[bi]);
      this.tracks.push(t);
      assigned[bi] = t.id;
    }
    return assigned;
  }

  match(ti, box) {
    const t = this.tracks[ti], [ox, oy] = centre(t.box), [nx, ny] = centre(box), steps = t.missed + 1, a = this.velocity;
    t.vx = (1 - a) * t.vx + (a * (nx - ox)) / steps;
    t.vy = (1 - a) * t.vy + (a * (ny - oy)) / steps;
    t.box = box; t.missed = 0; t.hits += 1;
  }
}

/** emolens.track.EmaSmoother: a time-based moving average of each face's probabilities, and a label that changes
 * only when another emotion is ahead by the hysteresis. */
export class EmaSmoother {
  constructor({ tau = 0.25, box_tau = 0, hysteresis = 0.05 } = {}) {
    this.tau = tau; this.boxTau = box_tau; this.hysteresis = hysteresis;
    this.probs = new Map(); this.boxes = new Map(); this.labels = new Map();
  }

  static blend(state, key, value, t, tau) {
    const prev = state.get(key);
    let out;
    if (!prev || tau <= 0) out = Float64Array.from(value);
    else {
      const [t0, old] = prev, alpha = 1 - Math.exp(-Math.max(0, t - t0) / tau);
      out = old.map((o, i) => o + alpha * (value[i] - o));
    }
    state.set(key, [t, out]);
    return out;
  }

  update(id, probs, t) {
    const out = EmaSmoother.blend(this.probs, id, probs, t, this.tau);
    const s = out.reduce((a, b) => a + b, 0);
    return s > 0 ? out.map((v) => v / s) : out;
  }

  label(id, probs) {
    let best = 0;
    for (let k = 1; k < probs.length; k++) if (probs[k] > probs[best]) best = k;
    const cur = this.labels.get(id);
    if (cur !== undefined && cur < probs.length && probs[best] - probs[cur] < this.hysteresis) best = cur;
    this.labels.set(id, best);
    return best;
  }

  current(id) {
    const prev = this.probs.get(id);
    if (!prev) return null;
    const s = prev[1].reduce((a, b) => a + b, 0), p = s > 0 ? prev[1].map((v) => v / s) : prev[1];
    let best = 0;
    for (let k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
    return [p, this.labels.has(id) ? this.labels.get(id) : best];
  }

  updateBox(id, box, t) {
    if (this.boxTau <= 0) return box;
    const [x0, y0, x1, y1] = EmaSmoother.blend(this.boxes, id, [box.x, box.y, box.x + box.w, box.y + box.h], t, this.boxTau);
    return box.movedTo(pyRound(x0), pyRound(y0), Math.max(1, pyRound(x1 - x0)), Math.max(1, pyRound(y1 - y0)));
  }

  forget(keep) {
    const k = new Set(keep);
    for (const state of [this.probs, this.boxes, this.labels]) for (const id of [...state.keys()]) if (!k.has(id)) state.delete(id);
  }

  reset() { this.probs.clear(); this.boxes.clear(); this.labels.clear(); }
}

/** emolens.video.frames.FrameTracker: a full face search every few frames, a local search around each known face
 * in between, faces just missed held for a few frames, every found face classified, its emotion smoothed. */
export class FrameTracker {
  constructor(recognizer, { detect_every = 5, every = 1, smoothing = 0.25, hysteresis = 0.05, box_smoothing = 0,
    hold = 3, max_missed = 10, local_search = true, iou_threshold = 0.3, velocity = 0.5 } = {}) {
    if (detect_every < 1 || every < 1 || hold < 0) throw new RangeError("detect_every and every must be >= 1, hold >= 0");
    this.recognizer = recognizer;
    this.detector = recognizer.liveDetector;
    this.detectEvery = detect_every; this.every = every; this.hold = hold; this.localSearch = local_search;
    this.searchInterval = Math.max(1, Math.floor(detect_every / every));
    this.tracker = new IoUTracker({ max_missed: Math.max(max_missed, hold), max_distance: 1.0, iou_threshold, velocity });
    this.smoother = new EmaSmoother({ tau: smoothing, box_tau: box_smoothing, hysteresis: smoothing ? hysteresis : 0 });
    this.count = 0;
  }

  reset() { this.tracker.reset(); this.smoother.reset(); this.count = 0; }

  async searchNear(frame, box) {
    const win = box.expand(1.0, frame.width, frame.height); // 3× the face: it may have moved by up to one face width
    if (win.w < 8 || win.h < 8) return null;
    const found = await this.detector.detect(cropReplicate(frame, win.x, win.y, win.w, win.h));
    const [cx, cy] = centre(box);
    let best = null, bestD = Infinity;
    for (const b of found) {
      const r = b.w / Math.max(1, box.w);
      if (!(r >= 0.6 && r <= 1.6)) continue;
      const d = Math.hypot(win.x + b.x + b.w / 2 - cx, win.y + b.y + b.h / 2 - cy);
      if (d < bestD) { best = b.movedTo(win.x + b.x, win.y + b.y, b.w, b.h); bestD = d; }
    }
    return best && bestD <= box.w ? best : null;
  }

  /** The faces of one frame (an image as image.mjs has them) at time t (seconds), with ids and smoothed
   * emotions: {faces: [{id, box, label, score, scores, raw_scores, missed, landmarks}], detected}. */
  async process(frame, t) {
    const full = this.count % this.searchInterval === 0 || !this.tracker.tracks.length;
    this.count += 1;
    let boxes, pending;
    if (full) {
      this.count = 1;
      boxes = [...(await this.detector.detect(frame))];
      pending = this.tracker.tracks.filter((tr) => boxes.every((b) => b.iou(tr.predicted()) < 0.3));
    } else {
      boxes = [];
      pending = [...this.tracker.tracks];
    }
    for (const tr of pending) {
      const pred = tr.predicted();
      const b = this.localSearch ? await this.searchNear(frame, pred) : (!full ? pred : null);
      if (b) boxes.push(b);
    }
    boxes = mergeOverlapping(boxes, 0.3);
    const ids = this.tracker.update(boxes);
    let report = boxes.map((b, i) => [ids[i], b, 0]);
    for (const tr of this.tracker.tracks) {
      if (tr.missed > 0 && tr.missed <= this.hold && boxes.every((b) => tr.box.iou(b) < 0.3)) report.push([tr.id, tr.box, tr.missed]);
    }
    const { width: w, height: h } = frame;
    report = report.map(([id, b, m]) => [id, new Box(Math.max(0, b.x), Math.max(0, b.y),
      Math.min(w, b.x + b.w) - Math.max(0, b.x), Math.min(h, b.y + b.h) - Math.max(0, b.y), b.score, b.landmarks), m]);
    report = report.filter(([, b]) => b.w >= 2 && b.h >= 2);
    // only faces found in this frame are classified: a held face keeps the emotion it had when last found
    const found = report.filter((r) => r[2] === 0);
    const raw = await this.recognizer.classifier.classifyBoxes(frame, found.map((r) => r[1]), this.recognizer.cropOptions);
    const rawOf = new Map(found.map((r, i) => [r[0], raw[i].scores]));
    const labels = this.recognizer.labels, faces = [];
    for (const [id, box, missed] of report) {
      let rawScores = rawOf.get(id), p, k;
      if (rawScores) {
        p = this.smoother.update(id, labels.map((lab) => rawScores[lab]), t);
        k = this.smoother.label(id, p);
      } else {
        const state = this.smoother.current(id);
        if (!state) continue;
        [p, k] = state;
        rawScores = {};
      }
      const scores = {};
      labels.forEach((lab, i) => { scores[lab] = p[i]; });
      const f = face(this.smoother.updateBox(id, box, t), labels[k], p[k], scores);
      faces.push({ id, ...f, raw_scores: rawScores, missed });
    }
    this.smoother.forget(this.tracker.ids());
    return { faces: stableSortBy(faces, (f) => -f.box[2] * f.box[3]), detected: full, time_s: t };
  }
}
