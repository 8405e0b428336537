// Pixel work on decoded images, written to give OpenCV's results for 8-bit images: the same rounding, the same
// fixed-point arithmetic, the same border rules (emolens' Python road runs on OpenCV; the browser must see the
// same pixels). An image here is {width, height, channels, data}: data a Uint8Array/Uint8ClampedArray of
// height × width × channels bytes, row by row (RGBA from a canvas, RGB, or gray).

export const INTER_LINEAR = 1;
export const INTER_AREA = 3;

/** Python's round(): halves go to the even neighbour (also OpenCV's cvRound under the default FPU mode). */
export function pyRound(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const f32 = Math.fround;
const clip = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);
const sat8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

export function makeImage(width, height, channels, data) {
  return { width, height, channels, data: data || new Uint8Array(width * height * channels) };
}

/** cv2.cvtColor(..., COLOR_BGR2GRAY) (and RGB/RGBA → gray): OpenCV's 15-bit fixed-point weights. */
export function toGray(img) {
  const { width, height, channels, data } = img;
  if (channels === 1) return img;
  const out = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < out.length; i++, j += channels) {
    out[i] = (data[j] * 9798 + data[j + 1] * 19235 + data[j + 2] * 3735 + 16384) >> 15;
  }
  return makeImage(width, height, 1, out);
}

/** The image as packed RGB (gray repeated, alpha dropped). */
export function toRGB(img) {
  const { width, height, channels, data } = img;
  if (channels === 3) return img;
  const out = new Uint8Array(width * height * 3);
  if (channels === 1) {
    for (let i = 0; i < width * height; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = data[i];
  } else {
    for (let i = 0; i < width * height; i++) {
      out[3 * i] = data[4 * i]; out[3 * i + 1] = data[4 * i + 1]; out[3 * i + 2] = data[4 * i + 2];
    }
  }
  return makeImage(width, height, 3, out);
}

/** cv2.resize(img, (dw, dh), interpolation) for 8-bit images: INTER_AREA (exact averages when shrinking by a
 * whole factor, area weights otherwise) and INTER_LINEAR (11-bit fixed point), as OpenCV computes them. */
export function resize(img, dw, dh, interpolation) {
  const { width: sw, height: sh, channels: cn } = img;
  if (dw === sw && dh === sh) return makeImage(sw, sh, cn, img.data.slice());
  const invX = dw / sw, invY = dh / sh;
  const scaleX = 1 / invX, scaleY = 1 / invY;
  const iscaleX = pyRound(scaleX), iscaleY = pyRound(scaleY);
  const areaFast = Math.abs(scaleX - iscaleX) < Number.EPSILON && Math.abs(scaleY - iscaleY) < Number.EPSILON;
  let interp = interpolation;
  if (interp === INTER_LINEAR && areaFast && iscaleX === 2 && iscaleY === 2) interp = INTER_AREA;
  if (interp === INTER_AREA && scaleX >= 1 && scaleY >= 1) {
    return areaFast ? resizeAreaFast(img, dw, dh, iscaleX, iscaleY) : resizeArea(img, dw, dh, scaleX, scaleY);
  }
  return resizeLinear(img, dw, dh, scaleX, scaleY, invX, invY, interp === INTER_AREA);
}

function resizeAreaFast(img, dw, dh, sx, sy) {
  const { width: sw, height: sh, channels: cn, data } = img;
  const out = new Uint8Array(dw * dh * cn);
  const area = sx * sy;
  const scale = f32(1 / area);
  const fast2 = sx === 2 && sy === 2 && (cn === 1 || cn === 3 || cn === 4);
  const rowW = Math.floor(sw / sx) * cn; // dwidth1: whole blocks inside the row
  const row = sw * cn;
  for (let dy = 0; dy < dh; dy++) {
    const sy0 = dy * sy;
    const o = dy * dw * cn;
    if (sy0 >= sh) continue; // zeros
    const w = sy0 + sy <= sh ? rowW : 0;
    let dx = 0;
    for (; dx < w; dx++) {
      const c = dx % cn, sx0 = Math.floor(dx / cn) * sx * cn + c;
      let sum = 0;
      for (let ky = 0; ky < sy; ky++) {
        const base = (sy0 + ky) * row + sx0;
        for (let kx = 0; kx < sx; kx++) sum += data[base + kx * cn];
      }
      out[o + dx] = fast2 ? (sum + 2) >> 2 : sat8(pyRound(f32(sum * scale)));
    }
    for (; dx < dw * cn; dx++) { // blocks cut by the border: the mean of the pixels there
      const c = dx % cn, sx0 = Math.floor(dx / cn) * sx * cn + c;
      let sum = 0, count = 0;
      for (let ky = 0; ky < sy && sy0 + ky < sh; ky++) {
        for (let kx = 0; kx < sx * cn; kx += cn) {
          if (sx0 + kx >= row) break;
          sum += data[(sy0 + ky) * row + sx0 + kx]; count++;
        }
      }
      out[o + dx] = count ? sat8(pyRound(f32(sum / count))) : 0;
    }
  }
  return makeImage(dw, dh, cn, out);
}

function areaTable(ssize, dsize, scale) {
  const tab = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) tab.push([dx, sx1 - 1, f32((sx1 - fsx1) / cellWidth)]);
    for (let sx = sx1; sx < sx2; sx++) tab.push([dx, sx, f32(1.0 / cellWidth)]);
    if (fsx2 - sx2 > 1e-3) tab.push([dx, sx2, f32(Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth)]);
  }
  return tab;
}

function resizeArea(img, dw, dh, scaleX, scaleY) {
  const { width: sw, height: sh, channels: cn, data } = img;
  const xtab = areaTable(sw, dw, scaleX), ytab = areaTable(sh, dh, scaleY);
  const out = new Uint8Array(dw * dh * cn);
  const W = dw * cn;
  const buf = new Float32Array(W), sum = new Float32Array(W);
  let prevDy = ytab[0][0];
  const flush = (dy) => {
    const o = dy * W;
    for (let i = 0; i < W; i++) out[o + i] = sat8(pyRound(sum[i]));
  };
  for (let j = 0; j < ytab.length; j++) {
    const [dy, sy, beta] = ytab[j];
    buf.fill(0);
    const rowBase = sy * sw * cn;
    for (let k = 0; k < xtab.length; k++) {
      const [dx, sx, alpha] = xtab[k];
      const d = dx * cn, s = rowBase + sx * cn;
      for (let c = 0; c < cn; c++) buf[d + c] = f32(buf[d + c] + f32(data[s + c] * alpha));
    }
    if (dy !== prevDy) {
      flush(prevDy);
      for (let i = 0; i < W; i++) sum[i] = f32(beta * buf[i]);
      prevDy = dy;
    } else {
      for (let i = 0; i < W; i++) sum[i] = f32(sum[i] + f32(beta * buf[i]));
    }
  }
  flush(prevDy);
  return makeImage(dw, dh, cn, out);
}

function linearCoefficients(ssize, dsize, scale, inv, areaMode) {
  const ofs = new Int32Array(dsize), a0 = new Int32Array(dsize), a1 = new Int32Array(dsize);
  let min = 0, max = dsize;
  for (let d = 0; d < dsize; d++) {
    let s, f;
    if (!areaMode) {
      f = f32((d + 0.5) * scale - 0.5);
      s = Math.floor(f);
      f = f32(f - s);
    } else {
      s = Math.floor(d * scale);
      f = f32((d + 1) - (s + 1) * inv);
      f = f <= 0 ? 0 : f32(f - Math.floor(f));
    }
    if (s < 0) { min = d + 1; f = 0; s = 0; }
    if (s + 1 >= ssize) { max = Math.min(max, d); if (s >= ssize - 1) { f = 0; s = ssize - 1; } }
    ofs[d] = s;
    a0[d] = clip(pyRound(f32(f32(1 - f) * 2048)), -32768, 32767);
    a1[d] = clip(pyRound(f32(f * 2048)), -32768, 32767);
  }
  return { ofs, a0, a1, min, max };
}

function resizeLinear(img, dw, dh, scaleX, scaleY, invX, invY, areaMode) {
  const { width: sw, height: sh, channels: cn, data } = img;
  const X = linearCoefficients(sw, dw, scaleX, invX, areaMode);
  // rows: OpenCV does not clamp the vertical coefficients, it clamps the row index
  const yofs = new Int32Array(dh), b0 = new Int32Array(dh), b1 = new Int32Array(dh);
  for (let d = 0; d < dh; d++) {
    let s, f;
    if (!areaMode) {
      f = f32((d + 0.5) * scaleY - 0.5);
      s = Math.floor(f);
      f = f32(f - s);
    } else {
      s = Math.floor(d * scaleY);
      f = f32((d + 1) - (s + 1) * invY);
      f = f <= 0 ? 0 : f32(f - Math.floor(f));
    }
    yofs[d] = s;
    b0[d] = clip(pyRound(f32(f32(1 - f) * 2048)), -32768, 32767);
    b1[d] = clip(pyRound(f32(f * 2048)), -32768, 32767);
  }
  const W = dw * cn;
  const hrow = (sy) => {
    const r = new Int32Array(W);
    const base = sy * sw * cn;
    for (let dx = 0; dx < dw; dx++) {
      const sx = base + X.ofs[dx] * cn;
      if (dx < X.max) {
        const p = X.a0[dx], q = X.a1[dx];
        for (let c = 0; c < cn; c++) r[dx * cn + c] = data[sx + c] * p + data[sx + c + cn] * q;
      } else {
        for (let c = 0; c < cn; c++) r[dx * cn + c] = data[sx + c] * 2048;
      }
    }
    return r;
  };
  const cache = new Map();
  const rowOf = (sy) => {
    let r = cache.get(sy);
    if (!r) { r = hrow(sy); cache.set(sy, r); if (cache.size > 4) cache.delete(cache.keys().next().value); }
    return r;
  };
  const out = new Uint8Array(dh * W);
  for (let dy = 0; dy < dh; dy++) {
    const S0 = rowOf(clip(yofs[dy], 0, sh - 1)), S1 = rowOf(clip(yofs[dy] + 1, 0, sh - 1));
    const p = b0[dy], q = b1[dy], o = dy * W;
    for (let i = 0; i < W; i++) {
      out[o + i] = sat8((((p * (S0[i] >> 4)) >> 16) + ((q * (S1[i] >> 4)) >> 16) + 2) >> 2);
    }
  }
  return makeImage(dw, dh, cn, out);
}

/** The region [x0, x0 + w) × [y0, y0 + h) of an image; coordinates outside repeat the edge pixels
 * (cv2.copyMakeBorder with BORDER_REPLICATE around the part inside). */
export function cropReplicate(img, x0, y0, w, h) {
  const { width, height, channels: cn, data } = img;
  const out = new Uint8Array(w * h * cn);
  const xs = new Int32Array(w);
  for (let x = 0; x < w; x++) xs[x] = clip(x0 + x, 0, width - 1) * cn;
  for (let y = 0; y < h; y++) {
    const src = clip(y0 + y, 0, height - 1) * width * cn, dst = y * w * cn;
    if (x0 >= 0 && x0 + w <= width) {
      out.set(data.subarray(src + x0 * cn, src + (x0 + w) * cn), dst);
    } else {
      for (let x = 0; x < w; x++) for (let c = 0; c < cn; c++) out[dst + x * cn + c] = data[src + xs[x] + c];
    }
  }
  return makeImage(w, h, cn, out);
}

/** emolens.crop.crop_face: the square of scale × the box's longer side centred on the box; past the border the
 * edge pixels repeat; a square over maxSide is shrunk (area averaging) from the pixels it covers. */
export function cropFace(img, box, scale = 1, maxSide = 1024) {
  const [bx, by, bw, bh] = box;
  const { width: w, height: h } = img;
  const side = Math.max(1, pyRound(Math.max(bw, bh) * scale));
  const x0 = pyRound(bx + bw / 2 - side / 2), y0 = pyRound(by + bh / 2 - side / 2);
  const x1 = x0 + side, y1 = y0 + side;
  const cx0 = Math.max(0, x0), cy0 = Math.max(0, y0), cx1 = Math.min(w, x1), cy1 = Math.min(h, y1);
  if (cx0 >= cx1 || cy0 >= cy1) throw new Error(`face box ${box.join(", ")} lies outside the ${w}x${h} image`);
  if (maxSide == null || side <= maxSide) return cropReplicate(img, x0, y0, side, side);
  const f = maxSide / side;
  const span = (a, b) => {
    const lo = Math.min(pyRound(a * f), maxSide - 1);
    return [lo, Math.max(lo + 1, Math.min(maxSide, pyRound(b * f)))];
  };
  const [ox0, ox1] = span(cx0 - x0, cx1 - x0), [oy0, oy1] = span(cy0 - y0, cy1 - y0);
  const inner = cropReplicate(img, cx0, cy0, cx1 - cx0, cy1 - cy0);
  const small = resize(inner, ox1 - ox0, oy1 - oy0, INTER_AREA);
  return cropReplicate(small, -ox0, -oy0, maxSide, maxSide);
}

/** cv2.warpAffine(img, M, (w, h), flags=INTER_LINEAR, borderMode=BORDER_REPLICATE) for 8-bit images: the inverse
 * map in 1/1024 px, 1/32-px bilinear weights in 15-bit fixed point, as OpenCV does it. */
export function warpAffine(img, m, w, h) {
  const { width: sw, height: sh, channels: cn, data } = img;
  let [m0, m1, m2, m3, m4, m5] = [m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2]];
  let D = m0 * m4 - m1 * m3;
  D = D !== 0 ? 1 / D : 0;
  const A11 = m4 * D, A22 = m0 * D;
  m0 = A11; m1 *= -D; m3 *= -D; m4 = A22;
  const b1 = -m0 * m2 - m1 * m5, b2 = -m3 * m2 - m4 * m5;
  m2 = b1; m5 = b2;
  const AB = 1024, roundDelta = AB / 32 / 2;
  const adelta = new Int32Array(w), bdelta = new Int32Array(w);
  for (let x = 0; x < w; x++) { adelta[x] = pyRound(m0 * x * AB); bdelta[x] = pyRound(m3 * x * AB); }
  const out = new Uint8Array(w * h * cn);
  for (let y = 0; y < h; y++) {
    const X0 = pyRound((m1 * y + m2) * AB) + roundDelta, Y0 = pyRound((m4 * y + m5) * AB) + roundDelta;
    for (let x = 0; x < w; x++) {
      const X = (X0 + adelta[x]) >> 5, Y = (Y0 + bdelta[x]) >> 5;
      const ix = clip(X >> 5, -32768, 32767), iy = clip(Y >> 5, -32768, 32767);
      const fx = X & 31, fy = Y & 31;
      const w00 = (32 - fy) * (32 - fx) * 32, w01 = (32 - fy) * fx * 32, w10 = fy * (32 - fx) * 32, w11 = fy * fx * 32;
      const xa = clip(ix, 0, sw - 1) * cn, xb = clip(ix + 1, 0, sw - 1) * cn;
      const ya = clip(iy, 0, sh - 1) * sw * cn, yb = clip(iy + 1, 0, sh - 1) * sw * cn;
      const o = (y * w + x) * cn;
      for (let c = 0; c < cn; c++) {
        const v = data[ya + xa + c] * w00 + data[ya + xb + c] * w01 + data[yb + xa + c] * w10 + data[yb + xb + c] * w11;
        out[o + c] = sat8((v + 16384) >> 15);
      }
    }
  }
  return makeImage(w, h, cn, out);
}
