import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32, zipFiles } from '../../src/core/io/zip';

const enc = (s: string) => new TextEncoder().encode(s);

/** An independent reader of stored zips: from the end record, through the central directory, to each local header. */
function readZip(zip: Uint8Array): Map<string, Uint8Array> {
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

test('CRC-32 is the standard one; a zip holds the files byte for byte', () => {
  assert.equal(crc32(enc('123456789')), 0xcbf43926, 'the CRC-32 check value');
  assert.equal(crc32(new Uint8Array()), 0);
  const files: [string, Uint8Array][] = [
    ['adapter_config.json', enc('{"peft_type": "LORA"}')],
    ['adapter_model.safetensors', Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) & 255)],
    ['ünïcode/名前.txt', enc('')],
  ];
  const zip = zipFiles(files, new Date(2026, 10, 28, 12, 30, 10));
  assert.deepEqual([...readZip(zip)], files);
});

test('unzip and Python zipfile read it, where they are installed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-zip-'));
  const payload = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 255);
  writeFileSync(join(dir, 'a.zip'), zipFiles([['adapter_config.json', enc('{"r": 8}')], ['w.bin', payload]]));
  let ran = 0;
  const unzip = spawnSync('unzip', ['-t', join(dir, 'a.zip')], { encoding: 'utf8' });
  if (!unzip.error) {
    ran++;
    assert.equal(unzip.status, 0, unzip.stdout + unzip.stderr);
    assert.match(unzip.stdout, /No errors detected/);
  }
  const py = spawnSync('python3', ['-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; open(sys.argv[2], "wb").write(z.read("w.bin")); print(z.namelist())', join(dir, 'a.zip'), join(dir, 'w.out')], { encoding: 'utf8' });
  if (!py.error && py.status !== 127) {
    ran++;
    assert.equal(py.status, 0, py.stderr);
    assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'w.out'))), payload);
  }
  if (!ran) t.skip('neither unzip nor python3 is installed here; the independent reader above still checks the layout');
});
