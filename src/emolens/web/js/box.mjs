// Face boxes, as emolens.detect.base.Box: integer x, y, w, h in the image's pixels, a detector score and five
// landmarks (image-left eye, other eye, nose tip, image-left mouth corner, other mouth corner) or null.
import { pyRound } from "./image.mjs";

export class Box {
  constructor(x, y, w, h, score = 1, landmarks = null) {
    this.x = x; this.y = y; this.w = w; this.h = h; this.score = score; this.landmarks = landmarks;
  }

  get area() { return this.w * this.h; }

  asList() { return [this.x, this.y, this.w, this.h]; }

  iou(o) {
    const ix = Math.max(0, Math.min(this.x + this.w, o.x + o.w) - Math.max(this.x, o.x));
    const iy = Math.max(0, Math.min(this.y + this.h, o.y + o.h) - Math.max(this.y, o.y));
    const inter = ix * iy, union = this.area + o.area - inter;
    return union ? inter / union : 0;
  }

  /** Widened by margin × size on every side, clipped to a width × height image. */
  expand(margin, width, height) {
    const dx = pyRound(this.w * margin), dy = pyRound(this.h * margin);
    const x0 = Math.max(0, this.x - dx), y0 = Math.max(0, this.y - dy);
    const x1 = Math.min(width, this.x + this.w + dx), y1 = Math.min(height, this.y + this.h + dy);
    return new Box(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0), this.score, this.landmarks);
  }

  /** This face at another place and size; the landmarks keep their positions relative to the box. */
  movedTo(x, y, w, h) {
    let marks = null;
    if (this.landmarks) {
      const sx = w / Math.max(1, this.w), sy = h / Math.max(1, this.h);
      marks = this.landmarks.map(([px, py]) => [x + (px - this.x) * sx, y + (py - this.y) * sy]);
    }
    return new Box(x, y, w, h, this.score, marks);
  }
}

/** Non-maximum suppression by size (emolens.detect.merge_overlapping): of boxes overlapping more than the
 * threshold, the most confident (then the largest) is kept; largest first. */
export function mergeOverlapping(boxes, iouThreshold = 0.3) {
  const order = boxes.map((b, i) => [b, i]).sort((a, b) =>
    b[0].score - a[0].score || b[0].area - a[0].area || a[1] - b[1]);
  const kept = [];
  for (const [b] of order) if (kept.every((k) => b.iou(k) <= iouThreshold)) kept.push(b);
  return stableSortBy(kept, (b) => -b.area);
}

export function stableSortBy(items, key) {
  return items.map((v, i) => [key(v), i, v]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((e) => e[2]);
}
