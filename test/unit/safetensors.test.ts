import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SafetensorsError, f16ToF32, readHeader, readSafetensors, writeSafetensors } from '../../src/core/io/safetensors';

/** Builds a file by hand from a header object and raw data, the way a foreign writer would. */
function file(header: unknown, data: Uint8Array, declaredLength?: number): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLength ?? h.byteLength), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

test('write then read round-trips values, shapes and metadata', () => {
  const tensors = {
    'h.0.attn.c_attn.weight': { shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-8, -1e30) },
    'wte.weight': { shape: [1], data: Float32Array.of(42) },
    empty: { shape: [0, 4], data: new Float32Array(0) },
  };
  const bytes = writeSafetensors(tensors, { format: 'pt' });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0, 'header padded to 8 bytes');
  const back = readSafetensors(bytes, 'x.safetensors');
  assert.deepEqual(back.metadata, { format: 'pt' });
  for (const [k, v] of Object.entries(tensors)) {
    assert.deepEqual(back.tensors[k].shape, v.shape);
    assert.deepEqual(back.tensors[k].data, v.data);
  }
});

test('F16, BF16 and F64 read as float32, at unaligned offsets too', () => {
  // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf; BF16: 1, -0.5; F64: pi.
  const f16 = Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00);
  const bf16 = Uint16Array.of(0x3f80, 0xbf00);
  const f64 = Float64Array.of(Math.PI);
  const u8 = Uint8Array.of(7);
  const data = new Uint8Array(1 + 10 + 4 + 8);
  data.set(u8, 0);
  data.set(bytesOf(f16), 1);
  data.set(bytesOf(bf16), 11);
  data.set(bytesOf(f64), 15);
  const bytes = file(
    {
      flag: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
      half: { dtype: 'F16', shape: [5], data_offsets: [1, 11] },
      brain: { dtype: 'BF16', shape: [2], data_offsets: [11, 15] },
      dbl: { dtype: 'F64', shape: [], data_offsets: [15, 23] },
    },
    data,
  );
  const h = readHeader(bytes, 'mixed.safetensors');
  assert.deepEqual(h.tensors.map((t) => t.name), ['flag', 'half', 'brain', 'dbl']);
  assert.throws(() => readSafetensors(bytes, 'mixed.safetensors'), /tensor flag is U8/);
  const noFlag = file(
    {
      half: { dtype: 'F16', shape: [5], data_offsets: [0, 10] },
      brain: { dtype: 'BF16', shape: [2], data_offsets: [10, 14] },
      dbl: { dtype: 'F64', shape: [], data_offsets: [14, 22] },
    },
    data.subarray(1),
  );
  const t = readSafetensors(noFlag, 'mixed.safetensors').tensors;
  assert.deepEqual(Array.from(t.half.data), [1, -2, 65504, 2 ** -24, Infinity]);
  assert.deepEqual(Array.from(t.brain.data), [1, -0.5]);
  assert.equal(t.dbl.data[0], Math.fround(Math.PI));
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.equal(f16ToF32(0x8000), -0);
});

test('every malformed header is refused with a message naming the file and tensor', () => {
  const four = new Uint8Array(16);
  const t = (extra: object) => ({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });
  const cases: [Uint8Array, RegExp, string | undefined][] = [
    [new Uint8Array(5), /too short/, undefined],
    [file(t({}), four, 10_000), /declares a 10000-byte header/, undefined],
    [file(t({}), four, 200 * 1024 * 1024), /over the 104857600-byte limit/, undefined],
    [file('just a string', new Uint8Array(0)), /must be a JSON object/, undefined],
    [file(t({ b: { dtype: 'Q4', shape: [2], data_offsets: [8, 16] } }), four), /tensor b has unknown dtype "Q4"/, 'b'],
    [file(t({ b: { dtype: 'F32', shape: [3], data_offsets: [8, 16] } }), four), /tensor b has 8 bytes but shape \[3\] of F32 needs 12/, 'b'],
    [file(t({ b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }), four), /tensor b ends at byte 20, past the 16-byte data buffer/, 'b'],
    [file(t({ b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), four), /tensor b overlaps/, 'b'],
    [file(t({ b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] } }), four), /tensor b leaves a gap/, 'b'],
    [file(t({}), four), /cover 8 of the 16 data bytes/, undefined],
    [file(t({ b: { dtype: 'F32', shape: [-1], data_offsets: [8, 16] } }), four), /tensor b has an invalid shape/, 'b'],
    [file(t({ b: { dtype: 'F32', shape: [2], data_offsets: [16, 8] } }), four), /tensor b has invalid data_offsets/, 'b'],
    [file(t({ __metadata__: { n: 3 } }), four.subarray(0, 8)), /__metadata__\.n must be a string/, '__metadata__.n'],
  ];
  for (const [bytes, message, field] of cases) {
    assert.throws(
      () => readSafetensors(bytes, 'model.safetensors'),
      (e: unknown) => e instanceof SafetensorsError && message.test(e.message) && e.file === 'model.safetensors' && e.field === field,
      String(message),
    );
  }
  const notJson = new Uint8Array(8 + 3);
  new DataView(notJson.buffer).setBigUint64(0, 3n, true);
  notJson.set([0x7b, 0xff, 0x7d], 8);
  assert.throws(() => readSafetensors(notJson, 'bad.safetensors'), /bad\.safetensors: the header is not valid UTF-8 JSON/);
});

test('random bytes never crash the reader with anything but a SafetensorsError', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const valid = writeSafetensors({ a: { shape: [3], data: Float32Array.of(1, 2, 3) }, b: { shape: [1], data: Float32Array.of(4) } });
  for (let i = 0; i < 2000; i++) {
    const bytes = valid.slice();
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
    try {
      readSafetensors(bytes, 'fuzz.safetensors');
    } catch (e) {
      assert.ok(e instanceof SafetensorsError, `case ${i}: ${(e as Error).name}: ${(e as Error).message}`);
    }
  }
});
