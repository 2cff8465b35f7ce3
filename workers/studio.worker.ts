// The worker: choose the backend, expose the Studio. No logic of its own (rule 4).
import { expose } from 'comlink';
import '../src/api/comlink-errors';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import { selectBackend } from '../src/api/backend';
import { webLocks } from '../src/api/locks';
import { Studio } from '../src/api/studio';
import { idbKV } from '../src/store/idb';

const wasmPaths = {
  'tfjs-backend-wasm.wasm': wasmPlain,
  'tfjs-backend-wasm-simd.wasm': wasmSimd,
  'tfjs-backend-wasm-threaded-simd.wasm': wasmSimd,
};

expose(new Studio({
  kv: idbKV(),
  locks: webLocks(),
  selectBackend: (request, onLost, exclude) => selectBackend(request, { wasmPaths, onLost, exclude }),
}));
