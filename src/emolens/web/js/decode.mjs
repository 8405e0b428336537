// Images into the browser module: a file's bytes checked as the emolens server checks an upload (empty, format from
// the first bytes, size from the header against the pixel cap, a JPEG cut short) with the same one-line messages,
// then decoded by the browser; or pixels taken from a canvas, an <img>, a <video> frame, an ImageBitmap or
// ImageData. The result is an image as image.mjs has them: RGBA bytes, transparency composited on white.
import { makeImage } from "./image.mjs";

export class ImageError extends Error {}

export const FORMATS = "PNG, JPEG, GIF, BMP, WebP or TIFF";

const u16be = (d, i) => (d[i] << 8) | d[i + 1];
const u16le = (d, i) => d[i] | (d[i + 1] << 8);
const u32le = (d, i) => (d[i] | (d[i + 1] << 8) | (d[i + 2] << 16)) + d[i + 3] * 2 ** 24;
const i32le = (d, i) => d[i] | (d[i + 1] << 8) | (d[i + 2] << 16) | (d[i + 3] << 24);
const u32be = (d, i) => d[i] * 2 ** 24 + ((d[i + 1] << 16) | (d[i + 2] << 8) | d[i + 3]);
const ascii = (d, a, b) => String.fromCharCode(...d.subarray(a, b));

/** Which of PNG, GIF, BMP, WebP, JPEG, TIFF the bytes are, from their first bytes (emolens.imageio.image_format). */
export function imageFormat(d) {
  if (d.length >= 8 && d[0] === 0x89 && ascii(d, 1, 8) === "PNG\r\n\x1a\n") return "png";
  if (["GIF87a", "GIF89a"].includes(ascii(d, 0, 6))) return "gif";
  if (ascii(d, 0, 2) === "BM") return "bmp";
  if (ascii(d, 0, 4) === "RIFF" && ascii(d, 8, 12) === "WEBP") return "webp";
  if (d[0] === 0xff && d[1] === 0xd8) return "jpeg";
  if (["II*\0", "MM\0*", "II+\0", "MM\0+"].includes(ascii(d, 0, 4))) return "tiff";
  return null;
}

/** Width and height from the header (emolens.imageio.header_size), or null. TIFF is not decoded here. */
export function headerSize(d) {
  const kind = imageFormat(d);
  try {
    if (kind === "png" && ascii(d, 12, 16) === "IHDR" && d.length >= 24) return [u32be(d, 16), u32be(d, 20)];
    if (kind === "gif" && d.length >= 10) return [u16le(d, 6), u16le(d, 8)];
    if (kind === "bmp" && d.length >= 26) {
      const header = u32le(d, 14);
      if (header === 12) return [u16le(d, 18), u16le(d, 20)];
      if (header >= 16) return [i32le(d, 18), Math.abs(i32le(d, 22))];
      return null;
    }
    if (kind === "webp" && d.length >= 30) {
      const chunk = ascii(d, 12, 16);
      if (chunk === "VP8X") return [1 + (d[24] | (d[25] << 8) | (d[26] << 16)), 1 + (d[27] | (d[28] << 8) | (d[29] << 16))];
      if (chunk === "VP8 ") return [u16le(d, 26) & 0x3fff, u16le(d, 28) & 0x3fff];
      if (chunk === "VP8L") {
        const b = d.subarray(21, 25);
        return [1 + (((b[1] & 0x3f) << 8) | b[0]), 1 + (((b[3] & 0xf) << 10) | (b[2] << 2) | ((b[1] & 0xc0) >> 6))];
      }
      return null;
    }
    if (kind === "jpeg") {
      let i = 2;
      while (i + 4 <= d.length) {
        if (d[i] !== 0xff) return null;
        const m = d[i + 1];
        if (m === 0xff) { i += 1; continue; }
        if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { i += 2; continue; }
        if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
          return i + 9 <= d.length ? [u16be(d, i + 7), u16be(d, i + 5)] : null;
        }
        i += 2 + u16be(d, i + 2);
      }
    }
  } catch (e) {
    return null;
  }
  return null;
}

/** True if an end-of-image marker follows the JPEG's first scan (a file cut short inside its scan has none). */
export function jpegComplete(d) {
  let i = 2;
  while (i + 4 <= d.length) {
    if (d[i] !== 0xff) return false;
    const m = d[i + 1];
    if (m === 0xff || m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { i += m === 0xff ? 1 : 2; continue; }
    if (m === 0xda) {
      for (let j = i; j + 1 < d.length; j++) if (d[j] === 0xff && d[j + 1] === 0xd9) return true;
      return false;
    }
    i += 2 + u16be(d, i + 2);
  }
  return false;
}

/** The name an input has in messages: a file's name, else "<N bytes>" (emolens.imageio.describe). */
export function describe(input, bytes) {
  if (input && typeof input.name === "string" && input.name) return input.name;
  return `<${bytes ? bytes.length : 0} bytes>`;
}

/** Check encoded bytes as the emolens server checks an upload; throws ImageError with its one-line message. */
export function checkEncoded(bytes, name, maxPixels) {
  if (!bytes.length) throw new ImageError(`${name}: empty upload (0 bytes)`);
  const kind = imageFormat(bytes);
  if (kind === null) {
    throw new ImageError(`${name}: cannot decode image (not a ${FORMATS} file; this server takes those, whose size ` +
      "it checks before decoding)");
  }
  const label = kind.toUpperCase();
  if (kind === "tiff") {
    throw new ImageError(`${name}: cannot decode image (browsers do not decode TIFF: convert it to PNG or JPEG, ` +
      "or send it to the emolens server)");
  }
  const size = headerSize(bytes);
  if (!size) {
    throw new ImageError(`${name}: cannot decode image (truncated or corrupt ${label} file: its header gives no ` +
      "image size, and nothing is decoded without one)");
  }
  const [w, h] = size;
  if (w <= 0 || h <= 0) throw new ImageError(`${name}: image header gives an invalid size ${w}x${h}`);
  if (w * h > maxPixels) {
    throw new ImageError(`${name}: image is ${w}x${h} = ${(w * h).toLocaleString("en-US")} pixels, over the limit of ` +
      `${maxPixels.toLocaleString("en-US")} (raise max_pixels if you trust this file)`);
  }
  return { kind, width: w, height: h };
}

function canvas(w, h) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(w, h);
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  return c;
}

let scratch = null; // one canvas reused for every frame (live mode draws one a frame)

/** The RGBA pixels of anything drawable, at its own size or scaled to width × height (transparency on white). */
export function pixelsOf(source, width, height) {
  if (!scratch) scratch = canvas(width, height);
  if (scratch.width !== width || scratch.height !== height) { scratch.width = width; scratch.height = height; }
  const ctx = scratch.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(source, 0, 0, width, height);
  const data = ctx.getImageData(0, 0, width, height).data;
  return makeImage(width, height, 4, data);
}

/** Decode encoded image bytes (checked first) into RGBA; the EXIF orientation is applied, colours as stored
 * (no colour-profile conversion: OpenCV does none either). */
export async function decodeBytes(bytes, name = `<${bytes.length} bytes>`, { maxPixels = 40_000_000 } = {}) {
  const { kind } = checkEncoded(bytes, name, maxPixels);
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]), {
      colorSpaceConversion: "none", imageOrientation: "from-image", premultiplyAlpha: "default",
    });
  } catch (e) {
    const why = kind === "jpeg" ? "truncated or corrupt JPEG" : `corrupt ${kind.toUpperCase()} file`;
    throw new ImageError(`${name}: cannot decode image (${why})`);
  }
  try {
    if (kind === "jpeg" && !jpegComplete(bytes)) {
      throw new ImageError(`${name}: cannot decode image (truncated JPEG: end-of-image marker missing)`);
    }
    if (bitmap.width * bitmap.height > maxPixels) {
      throw new ImageError(`${name}: image is ${bitmap.width}x${bitmap.height}, over the limit of ` +
        `${maxPixels.toLocaleString("en-US")} pixels`);
    }
    return pixelsOf(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

/** Any input as an image ({width, height, channels, data}): a File/Blob/ArrayBuffer/typed array (decoded and
 * checked), an already decoded image object, ImageData, or anything a canvas can draw (<img>, <canvas>, <video>,
 * ImageBitmap, VideoFrame) at its own size. */
export async function readImage(input, { maxPixels = 40_000_000, name } = {}) {
  if (input && input.data && input.width && input.height && input.channels) return input;
  if (typeof ImageData !== "undefined" && input instanceof ImageData) return makeImage(input.width, input.height, 4, input.data);
  let bytes = null;
  if (typeof Blob !== "undefined" && input instanceof Blob) bytes = new Uint8Array(await input.arrayBuffer());
  else if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
  else if (ArrayBuffer.isView(input)) bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (bytes) return decodeBytes(bytes, name || describe(input, bytes), { maxPixels });
  const [w, h] = naturalSize(input);
  if (!w || !h) throw new ImageError(`${name || "<image>"}: the image has no pixels yet (not loaded, or no video frame)`);
  if (w * h > maxPixels) {
    throw new ImageError(`${name || "<image>"}: image is ${w}x${h}, over the limit of ${maxPixels.toLocaleString("en-US")} pixels`);
  }
  return pixelsOf(input, w, h);
}

export function naturalSize(src) {
  if ("videoWidth" in src) return [src.videoWidth, src.videoHeight];
  if ("naturalWidth" in src) return [src.naturalWidth, src.naturalHeight];
  if ("displayWidth" in src) return [src.displayWidth, src.displayHeight];
  return [src.width, src.height];
}
