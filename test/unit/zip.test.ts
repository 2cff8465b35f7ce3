import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32, zipFiles } from '../../src/core/io/zip';
import { readZip } from '../support/zip';

const enc = (s: string) => new TextEncoder().encode(s);

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
