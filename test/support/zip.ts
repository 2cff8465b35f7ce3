import assert from 'node:assert/strict';
import { crc32 } from '../../src/core/io/zip';

/** An independent reader of stored zips: from the end record, through the central directory, to each local header. */
export function readZip(zip: Uint8Array): Map<string, Uint8Array> {
  const v = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const end = zip.length - 22;
  assert.equal(v.getUint32(end, true), 0x06054b50, 'end record');
  const count = v.getUint16(end + 10, true);
  let at = v.getUint32(end + 16, true);
  assert.equal(v.getUint32(end + 12, true), end - at, 'central directory size');
  const out = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    assert.equal(v.getUint32(at, true), 0x02014b50);
    const crc = v.getUint32(at + 16, true);
    const size = v.getUint32(at + 20, true);
    const nameLen = v.getUint16(at + 28, true);
    const local = v.getUint32(at + 42, true);
    const name = new TextDecoder().decode(zip.subarray(at + 46, at + 46 + nameLen));
    assert.equal(v.getUint32(local, true), 0x04034b50);
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    const bytes = zip.subarray(start, start + size);
    assert.equal(crc32(bytes), crc, `${name}: CRC`);
    out.set(name, bytes);
    at += 46 + nameLen;
  }
  return out;
}

