// What an emolens ONNX model carries (emolens.modelmeta.ModelMeta): read from the model file itself — the JSON
// under the key "emolens" in the ONNX metadata_props, which onnxruntime-web does not expose, so the protobuf is
// read here — or, for a file without it, from the metadata the export writes beside the model.

export const META_KEY = "emolens";

export class ModelError extends Error {}

const DEFAULTS = {
  input_size: 48, channels: 1, mean: 0.5, std: 0.25, architecture: "", temperature: 1.0, crop_margin: 0.0,
  tta_hflip: false, tta_scales: [1.0], name: "", metrics: {}, landmark_template: null, logit_bias: null, format: 1,
};

/** The metadata_props of an ONNX model (ModelProto field 14: key/value string pairs), read from its bytes. */
export function onnxMetadata(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const props = {};
  const text = new TextDecoder();
  let pos = 0;
  const varint = (end) => {
    let v = 0, mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new ModelError("cannot load as an ONNX model (the file is cut short)");
      const b = u8[pos++];
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw new ModelError("cannot load as an ONNX model (bad varint)");
  };
  const fields = (start, end, onField) => {
    pos = start;
    while (pos < end) {
      const key = varint(end), field = Math.floor(key / 8), wire = key % 8;
      if (wire === 0) { varint(end); continue; }
      if (wire === 1) { pos += 8; continue; }
      if (wire === 5) { pos += 4; continue; }
      if (wire !== 2) throw new ModelError("cannot load as an ONNX model (not a protobuf ModelProto)");
      const len = varint(end), at = pos;
      if (at + len > end) throw new ModelError("cannot load as an ONNX model (the file is cut short)");
      pos = at + len;
      onField(field, at, at + len);
    }
    if (pos !== end) throw new ModelError("cannot load as an ONNX model (the file is cut short)");
  };
  const entries = [];
  fields(0, u8.length, (field, a, b) => { if (field === 14) entries.push([a, b]); });
  for (const [a, b] of entries) {
    let k = "", v = "";
    fields(a, b, (field, s, e) => {
      if (field === 1) k = text.decode(u8.subarray(s, e));
      else if (field === 2) v = text.decode(u8.subarray(s, e));
    });
    props[k] = v;
  }
  return props;
}

/** ModelMeta.from_json + validate: the same fields, defaults and checks (messages start "model metadata:"). */
export function parseMeta(json) {
  const d = typeof json === "string" ? JSON.parse(json) : json;
  const m = { ...DEFAULTS, tta_scales: [...DEFAULTS.tta_scales], metrics: {} };
  for (const k of Object.keys(d)) if (k in DEFAULTS || k === "labels") m[k] = d[k];
  const bad = (why) => { throw new ModelError(`model metadata: ${why}`); };
  if (!Array.isArray(m.labels) || !m.labels.length || !m.labels.every((x) => typeof x === "string")) {
    bad("'labels' must be a non-empty list of names");
  }
  if (m.channels !== 1 && m.channels !== 3) bad(`'channels' must be 1 or 3, not ${m.channels}`);
  if (!(m.input_size >= 8)) bad(`'input_size' ${m.input_size} is too small`);
  if (!Array.isArray(m.tta_scales) || !m.tta_scales.length || m.tta_scales.some((s) => !(s >= 0.5 && s <= 2))) {
    bad(`'tta_scales' must be a non-empty list in [0.5, 2]: ${JSON.stringify(m.tta_scales)}`);
  }
  const t = m.landmark_template;
  if (t != null && (t.length !== 5 || t.some((p) => p.length !== 2 || p.some((v) => !(v >= -1 && v <= 2))))) {
    bad("'landmark_template' must be 5 (x, y) points, fractions of the crop");
  }
  const b = m.logit_bias;
  if (b != null && (!Array.isArray(b) || b.length !== m.labels.length || !b.every(Number.isFinite))) {
    bad(`'logit_bias' must be ${m.labels.length} finite numbers, one per label`);
  }
  for (const name of ["mean", "std"]) {
    const v = m[name];
    if (Array.isArray(v) && v.length === 1) m[name] = v[0];
    else if (Array.isArray(v) && v.length !== m.channels) bad(`'${name}' must be one number or ${m.channels} (one per channel)`);
  }
  const per = (v) => (Array.isArray(v) ? v.map(Number) : Array(m.channels).fill(Number(v)));
  m.meanArray = per(m.mean);
  m.stdArray = per(m.std);
  if (Math.min(...m.stdArray) <= 0 || m.temperature <= 0) bad("'std' and 'temperature' must be positive");
  return m;
}
